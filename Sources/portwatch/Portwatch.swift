import ArgumentParser
import PortwatchCore
#if canImport(Glibc)
import Glibc
#endif

/// A definite "no": the output is printed, the exit code says the answer is no (1).
struct AnswerNo: Error {}

@main
struct Portwatch: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "portwatch",
        abstract: "Is this port busy? Who holds it, how many connections, how much traffic, what fails.",
        discussion: """
            Exit codes: 0 success or expectation met, 1 a definite no (nothing found, \
            expectation not met, timeout), 2 the question could not be answered.
            """,
        version: "0.1.0",
        subcommands: [Ports.self, Check.self, Who.self, Connections.self, Top.self, Free.self, Wait.self, Kill.self,
                      DaemonCommand.self, ConfigCommand.self, History.self, Events.self],
        defaultSubcommand: Ports.self
    )

    /// Runs the command with the 0/1/2 exit contract: no input ends in a trap or a usage dump.
    static func main() {
        signal(SIGPIPE, SIG_IGN)
        let arguments = Array(CommandLine.arguments.dropFirst())
        if let long = arguments.first(where: { $0.utf8.count > 65_536 }) {
            printError("argument too long (\(long.utf8.count) bytes)")
            Glibc.exit(2)
        }
        // `check -1` would otherwise read as an unknown option "-1"; say what is really wrong.
        // (-4 and -6 are real flags.)
        if let negative = arguments.first(where: { arg in
            arg.count > 1 && arg.first == "-" && arg.dropFirst().allSatisfy(\.isNumber) && arg != "-4" && arg != "-6"
        }) {
            printError("invalid port '\(negative)': ports cannot be negative")
            Glibc.exit(2)
        }
        do {
            var command = try parseAsRoot(arguments)
            try command.run()
            Glibc.exit(0)
        } catch {
            Glibc.exit(exitCode(handling: error))
        }
    }

    /// Prints what the user must see for an error and returns the exit code.
    static func exitCode(handling error: Error) -> Int32 {
        switch error {
        case is AnswerNo:
            return 1
        case let e as PortwatchError:
            printError(e.message)
            return 2
        case let e as SystemCallError:
            printError(e.asPortwatchError.message)
            return 2
        case let e as ExitCode:
            return e.rawValue
        default:
            let code = exitCode(for: error)
            if code == .success {
                // --help and --version: ArgumentParser's own text, on stdout.
                print(fullMessage(for: error))
                return 0
            }
            // Parse errors: one line, ours.
            var message = Self.message(for: error)
            if let firstLine = message.split(separator: "\n").first { message = String(firstLine) }
            if message.hasPrefix("Error: ") { message.removeFirst("Error: ".count) }
            if message.isEmpty { message = "invalid arguments (see portwatch --help)" }
            printError(message)
            return 2
        }
    }
}

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
        subcommands: [Ports.self, Check.self, Probe.self, Scan.self, Who.self, Connections.self, Top.self, Free.self, Wait.self, Kill.self,
                      DaemonCommand.self, ConfigCommand.self, History.self, Events.self, Audit.self],
        defaultSubcommand: Ports.self
    )

    /// Runs the command with the 0/1/2 exit contract: no input ends in a trap or a usage dump.
    static func main() {
        signal(SIGPIPE, SIG_IGN)
        let given = Array(CommandLine.arguments.dropFirst())
        if let long = given.first(where: { $0.utf8.count > 65_536 }) {
            printError("argument too long (\(long.utf8.count) bytes)")
            Glibc.exit(2)
        }
        let arguments = joinNegativeValues(given)
        if let problem = unknownCommand(arguments) {
            printError(problem)
            Glibc.exit(2)
        }
        // `check -1` would otherwise read as an unknown option "-1"; say what is really wrong.
        // (-4 and -6 are real flags; option values were joined to their options above.)
        if let negative = arguments.first(where: isNegativeNumber) {
            printError("invalid port '\(negative)': ports cannot be negative")
            Glibc.exit(2)
        }
        do {
            var command = try parseAsRoot(arguments)
            try command.run()
            Glibc.exit(0)
        } catch {
            let code = exitCode(handling: error)
            // A plugin's question that could not be answered is UNKNOWN (exit 3), with a status line.
            if code == 2 && !(error is ExitCode) && wantsNagios(arguments) {
                emit("PORTWATCH UNKNOWN - \(oneLineMessage(for: error))")
                Glibc.exit(3)
            }
            Glibc.exit(code)
        }
    }

    /// Options that take a value. A value that starts with `-` (`--count -1`, `--timeout -1s`)
    /// would read as an option of its own ("Missing value"); joined as `--count=-1` the option
    /// gets it and says what is wrong with it.
    static let valueOptions: Set<String> = [
        "--host", "--expect", "--timeout", "--sample", "--until", "--state", "--interval", "--sort",
        "--iterations", "--range", "--count", "--signal", "--top", "--rate", "--concurrency", "--ports",
        "--warn-days", "--critical-days", "--send", "--format",
        "--fail-on",
    ]

    /// `-1`, `-80` (but not the flags -4 and -6).
    static func isNegativeNumber(_ arg: String) -> Bool {
        guard arg.count > 1, arg.first == "-", arg != "-4", arg != "-6" else { return false }
        return arg.dropFirst().allSatisfy(\.isNumber)
    }

    static func joinNegativeValues(_ arguments: [String]) -> [String] {
        var out: [String] = []
        var i = 0
        while i < arguments.count {
            let arg = arguments[i]
            if arg == "--" { out.append(contentsOf: arguments[i...]); break }
            if valueOptions.contains(arg), i + 1 < arguments.count, arguments[i + 1].hasPrefix("-"), arguments[i + 1].count > 1,
               !arguments[i + 1].hasPrefix("--") {
                out.append(arg + "=" + arguments[i + 1])
                i += 2
                continue
            }
            out.append(arg)
            i += 1
        }
        return out
    }

    /// `portwatch checkk 80`: a first word that is neither a command nor a port list (which
    /// would mean `ports`) is a mistyped command.
    static func unknownCommand(_ arguments: [String]) -> String? {
        guard let first = arguments.first, !first.hasPrefix("-") else { return nil }
        let names = configuration.subcommands.map { $0._commandName } + ["help"]
        if names.contains(first) { return nil }
        if (try? PortSpec(parsing: first)) != nil { return nil }
        let word = String(first.prefix(64))
        if let near = names.min(by: { editDistance(word, $0) < editDistance(word, $1) }), editDistance(word, near) <= 2 {
            return "unknown command '\(word)' (did you mean '\(near)'?)"
        }
        return "unknown command '\(word)' (commands: \(names.dropLast().joined(separator: ", ")))"
    }

    /// Levenshtein distance, for "did you mean".
    static func editDistance(_ a: String, _ b: String) -> Int {
        let x = Array(a.utf8), y = Array(b.utf8)
        var row = Array(0...y.count)
        for i in 1...max(1, x.count) where !x.isEmpty {
            var prev = row[0]
            row[0] = i
            for j in 1...max(1, y.count) where !y.isEmpty {
                let cur = row[j]
                row[j] = min(row[j] + 1, row[j - 1] + 1, prev + (x[i - 1] == y[j - 1] ? 0 : 1))
                prev = cur
            }
        }
        return x.isEmpty ? y.count : row[y.count]
    }

    /// ArgumentParser's "The value 'x' is invalid for '--opt <opt>'. Please provide one of the
    /// following:\n- a\n- b" as one line: "invalid --opt 'x': use one of a, b".
    static func oneLine(_ message: String) -> String {
        let lines = message.split(separator: "\n").map { $0.drop(while: { $0 == " " }) }
        guard var first = lines.first.map(String.init) else { return "" }
        let choices = lines.dropFirst().filter { $0.hasPrefix("- ") }.map { String($0.dropFirst(2)) }
        if first.hasPrefix("Error: ") { first.removeFirst("Error: ".count) }
        if first.hasPrefix("The value '"), let forRange = first.firstRange(of: "' is invalid for '") {
            let value = first[first.index(first.startIndex, offsetBy: "The value '".count)..<forRange.lowerBound]
            let rest = first[forRange.upperBound...]
            let option = rest.prefix { $0 != " " && $0 != "'" }
            var tail = ""
            if let colon = rest.firstRange(of: "': ") {
                tail = ": " + rest[colon.upperBound...]
            } else if let oneOf = rest.firstRange(of: "Please provide one of ") {
                var listed = rest[oneOf.upperBound...]
                while let last = listed.last, last == "." || last == ":" { listed = listed.dropLast() }
                tail = ": use one of " + (choices.isEmpty ? String(listed) : choices.joined(separator: ", "))
            }
            return "invalid \(option) '\(value)'" + tail
        }
        return first
    }

    /// The one-line message of an error that makes exit 2 (for a plugin's UNKNOWN line).
    static func oneLineMessage(for error: Error) -> String {
        switch error {
        case let e as PortwatchError: return e.message
        case let e as SystemCallError: return e.asPortwatchError.message
        default:
            var message = oneLine(Self.message(for: error))
            if message.hasPrefix("Error: ") { message.removeFirst("Error: ".count) }
            return message.isEmpty ? "invalid arguments (see portwatch --help)" : message
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
            var message = oneLine(Self.message(for: error))
            if message.hasPrefix("Error: ") { message.removeFirst("Error: ".count) }
            if message.isEmpty { message = "invalid arguments (see portwatch --help)" }
            printError(message)
            return 2
        }
    }
}

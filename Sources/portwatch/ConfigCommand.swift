import ArgumentParser
import PortwatchCore
import PortwatchMonitor
#if canImport(Glibc)
import Glibc
#endif

/// `portwatch config`: commands about the daemon's config file.
struct ConfigCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "config",
        abstract: "Work with the daemon's YAML config file.",
        subcommands: [ConfigCheck.self])
}

/// `portwatch config check FILE`: every problem as `FILE:LINE:COLUMN: message`, exit 2; a one-line
/// summary and exit 0 when the file is valid.
struct ConfigCheck: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Validate a config file: every problem as FILE:LINE:COLUMN: message (exit 2), or a summary (exit 0).")

    @Argument(help: "The YAML config file.")
    var file: String

    @OptionGroup var output: OutputOptions

    func run() throws {
        let config: MonitorConfig
        do throws(ConfigError) {
            config = try ConfigLoader.load(file: file)
        } catch {
            report(error.problems)
            throw ExitCode(2)
        }
        if output.json {
            output.print(document(problems: [], summary: summaryJSON(config)))
        } else {
            emit("\(file): ok — \(summaryLine(config))")
        }
    }

    /// Problems with a place go out compiler-style (editors jump to them); a problem with the whole
    /// file (missing, unreadable) is the usual one `portwatch: ` line.
    private func report(_ problems: [ConfigProblem]) {
        if output.json {
            output.print(document(problems: problems, summary: nil))
            return
        }
        for problem in problems {
            if problem.line > 0 {
                writeAll(STDERR_FILENO, oneLine(problem.description) + "\n")
            } else {
                printError(problem.description)
            }
        }
    }

    private func document(problems: [ConfigProblem], summary: JSONValue?) -> JSONValue {
        .object([
            ("file", .string(file)),
            ("valid", .bool(problems.isEmpty)),
            ("problems", .array(problems.map { p in
                .object([("file", .string(p.file)), ("line", .number(p.line)), ("column", .number(p.column)),
                         ("message", .string(p.message))])
            })),
            ("summary", summary ?? .null),
        ])
    }

    private func summaryLine(_ config: MonitorConfig) -> String {
        func count(_ n: Int, _ noun: String) -> String { "\(n) \(noun)\(n == 1 ? "" : "s")" }
        return "interval \(formatDuration(config.interval)), listen \(config.listen), "
            + "\(count(config.rules.count, "rule")), \(count(config.channels.count, "channel")), "
            + "\(count(config.ports.count, "port"))"
    }

    private func summaryJSON(_ config: MonitorConfig) -> JSONValue {
        let (seconds, attoseconds) = config.interval.components
        return .object([
            ("interval", .string(formatDuration(config.interval))),
            ("interval_seconds", .double(Double(seconds) + Double(attoseconds) / 1e18)),
            ("listen", .string(config.listen.description)),
            ("token_file", .optional(config.tokenFile)),
            ("database", .optional(config.database.path)),
            ("rules", .number(config.rules.count)),
            ("channels", .number(config.channels.count)),
            ("ports", .number(config.ports.count)),
            ("capture", .bool(config.capture)),
            ("instance", .optional(config.instance)),
        ])
    }
}

/// A message kept on one line: a config value quoted in it may hold control characters.
private func oneLine(_ text: String) -> String {
    String(String.UnicodeScalarView(text.unicodeScalars.map { scalar in
        switch scalar.properties.generalCategory {
        case .control, .lineSeparator, .paragraphSeparator: "?"
        default: scalar
        }
    }))
}

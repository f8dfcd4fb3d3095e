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
            output.print { w in document(problems: [], config: config, to: &w) }
        } else {
            emit("\(file): ok — \(summaryLine(config))")
        }
    }

    /// Problems with a place go out compiler-style (editors jump to them); a problem with the whole
    /// file (missing, unreadable) is the usual one `portwatch: ` line.
    private func report(_ problems: [ConfigProblem]) {
        if output.json {
            output.print { w in document(problems: problems, config: nil, to: &w) }
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

    /// `{"file", "valid", "problems": [{"file", "line", "column", "message"}], "summary"}`.
    private func document(problems: [ConfigProblem], config: MonitorConfig?, to w: inout JSONWriter) {
        w.beginObject()
        w.field("file", file)
        w.field("valid", problems.isEmpty)
        w.array("problems") { w in
            for p in problems {
                w.beginObject()
                w.field("file", p.file)
                w.field("line", p.line)
                w.field("column", p.column)
                w.field("message", p.message)
                w.endObject()
            }
        }
        w.key("summary")
        if let config { summary(config, to: &w) } else { w.null() }
        w.endObject()
    }

    private func summaryLine(_ config: MonitorConfig) -> String {
        func count(_ n: Int, _ noun: String) -> String { "\(n) \(noun)\(n == 1 ? "" : "s")" }
        return "interval \(formatDuration(config.interval)), listen \(config.listen), "
            + "\(count(config.rules.count, "rule")), \(count(config.channels.count, "channel")), "
            + "\(count(config.ports.count, "port"))"
            + (config.probes.isEmpty ? "" : ", \(count(config.probes.count, "probe"))")
    }

    private func summary(_ config: MonitorConfig, to w: inout JSONWriter) {
        let (seconds, attoseconds) = config.interval.components
        w.beginObject()
        w.field("interval", formatDuration(config.interval))
        w.field("interval_seconds", double: Double(seconds) + Double(attoseconds) / 1e18)
        w.field("listen", config.listen.description)
        w.field("token_file", config.tokenFile)
        w.field("database", config.database.path)
        w.field("rules", config.rules.count)
        w.field("channels", config.channels.count)
        w.field("ports", config.ports.count)
        w.field("probes", config.probes.count)
        w.field("capture", config.capture)
        w.field("instance", config.instance)
        w.endObject()
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

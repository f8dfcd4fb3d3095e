import ArgumentParser
import Foundation
import PortwatchCore

/// `--format`: the human table (default) or the monitoring-plugins protocol.
enum ReportFormat: String, CaseIterable, ExpressibleByArgument {
    case text, nagios

    init?(argument: String) { self.init(rawValue: argument.lowercased()) }
}

/// One monitoring-plugins status line: `PORTWATCH OK - summary | perfdata`, as the plugin
/// guidelines (and check_tcp, check_ssl_cert) write it.
func nagiosLine(_ status: PluginStatus, _ summary: String, perfdata: [String]) -> String {
    var line = "PORTWATCH \(status.word) - \(summary)"
    if !perfdata.isEmpty { line += " | " + perfdata.joined(separator: " ") }
    return line
}

/// A perfdata label: quoted when it holds anything but letters, digits and `_` (the guidelines'
/// rule for spaces and `=`; a target's `:` and `[` read better quoted too).
func perfLabel(_ base: String, target: String?) -> String {
    guard let target else { return base }
    let label = "\(base)_\(target)".replacing("'", with: "\"")
    return "'\(label)'"
}

/// Seconds for perfdata: six decimals, the unit `s`.
func perfSeconds(_ seconds: Double) -> String {
    String(format: "%.6fs", seconds)
}

/// Prints the line and exits with the status as the exit code (0 returns normally).
func finishNagios(_ status: PluginStatus, _ line: String) throws {
    emit(line)
    if status != .ok { throw ExitCode(status.rawValue) }
}

/// True when the arguments ask for `--format nagios`: errors then speak the plugin protocol
/// (UNKNOWN, exit 3) instead of exit 2.
func wantsNagios(_ arguments: [String]) -> Bool {
    for (i, arg) in arguments.enumerated() {
        if arg == "--" { return false }
        if arg.lowercased() == "--format=nagios" { return true }
        if arg == "--format", i + 1 < arguments.count, arguments[i + 1].lowercased() == "nagios" { return true }
    }
    return false
}

import ArgumentParser
import Foundation
import PortwatchCore
import PortwatchMonitor

/// `portwatch history`: stored samples of ports, read straight from the daemon's database.
struct History: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Stored samples of ports from the daemon's history (read-only; the daemon may be running).",
        discussion: "Exit 1 when the database has no samples of the ports in the span.")

    @Argument(help: "Ports: 8080, 8000-8100, 22,80,443, ssh, 53/udp.")
    var ports: String

    @Option(name: .long, help: "How far back (default 1h): 30m, 24h, 7d.")
    var since: String = "1h"

    @Option(name: .long, help: "Step of the rows (1m, 1h); default: the finest stored resolution covering the span.")
    var step: String?

    @Option(name: .long, help: "History database (default: the daemon's).")
    var db: String?

    @Option(name: .long, help: ArgumentHelp(
        "A network namespace the daemon watched: host (default: its own), a name from /run/netns, net:[INODE] or pid:PID.",
        valueName: "NAME"))
    var netns: String?

    @OptionGroup var output: OutputOptions

    func run() throws {
        let spec = try parsePorts(ports)
        let span = try durationSeconds(since, option: "--since")
        if span <= 0 { throw PortwatchError.usage("--since: must be more than 0") }
        let stepSeconds = try step.map { try durationSeconds($0, option: "--step") }
        if let stepSeconds, stepSeconds < 1 || stepSeconds > 366 * 86400 {
            throw PortwatchError.usage("--step: must be between 1s and 366d")
        }
        let namespace = try netns.flatMap { text throws(PortwatchError) in try HistoryNamespace.parse(text, option: "--netns") }
        let store = try HistoryStore.openReadOnly(path: db ?? defaultHistoryPath())
        let now = Date().timeIntervalSince1970
        let protos = spec.protocols(default: [.tcp, .udp])
        // A namespace the history never stored is exit 2, not "no samples".
        try store.requireNamespace(namespace)
        let wanted = try store.ports().filter {
            $0.namespace == namespace && protos.contains($0.proto) && spec.contains(port: $0.port, proto: $0.proto)
        }
        let series = try wanted.map { try store.history($0, since: now - span, until: now, step: stepSeconds) }
            .filter { !$0.samples.isEmpty }
        if output.json {
            output.print { w in w.value(["history": .array(series.map(\.json))]) }
        } else if series.isEmpty {
            printError("no stored samples of \(ports)\(namespace.map { " in network namespace \($0)" } ?? "") in the last \(since) (\(store.path))")
        } else {
            emit(series.map(render).joined(separator: "\n"))
        }
        if series.isEmpty { throw AnswerNo() }
    }

    /// A heading with sparklines of connections and traffic, then a row per step.
    private func render(_ s: HistorySeries) -> String {
        let terminal = Terminal.stdout
        let first = s.samples.first?.time ?? 0
        let last = s.samples.last?.time ?? 0
        let stepText = s.stepSeconds > 0 ? formatDuration(.milliseconds(Int64((s.stepSeconds * 1000).rounded()))) : "-"
        let width = min(60, max(10, s.samples.count))
        var out = terminal.bold((s.namespace.map { "\($0) " } ?? "") + "\(s.proto.rawValue)/\(s.port)") + "  step \(stepText)  \(s.samples.count) samples  "
            + "\(rfc3339(first)) … \(rfc3339(last))\n"
        out += "connections \(sparkline(resample(s.samples.map { Double($0.connections.total) }, to: width), width: width))\n"
        out += "traffic     \(sparkline(resample(s.samples.map { $0.receivedBps + $0.sentBps }, to: width), width: width))\n"
        var table = Table([
            .init(title: "TIME"), .init(title: "LISTEN"), .init(title: "CONNS", align: .right),
            .init(title: "ESTAB", align: .right), .init(title: "OPENED", align: .right),
            .init(title: "RX/s", align: .right), .init(title: "TX/s", align: .right),
            .init(title: "RETRANS", align: .right), .init(title: "DROPS", align: .right),
            .init(title: "PROCESS", flexible: true),
        ])
        for sample in s.samples {
            table.add([
                rfc3339(sample.time), sample.listening ? "yes" : "no", String(sample.connections.total),
                String(sample.connections.established), String(sample.connectionsOpened),
                formatRate(bitsPerSecond: sample.receivedBps), formatRate(bitsPerSecond: sample.sentBps),
                String(sample.retransmits), String(sample.listenDrops + sample.drops),
                sample.owners.isEmpty ? "-" : sample.owners.joined(separator: ","),
            ])
        }
        return out + table.render(terminal)
    }
}

/// Averages a long series down to `width` points (sparklines show the whole span, not its tail).
private func resample(_ values: [Double], to width: Int) -> [Double] {
    guard values.count > width, width > 0 else { return values }
    return (0..<width).map { i in
        let lo = i * values.count / width
        let hi = max(lo + 1, (i + 1) * values.count / width)
        return values[lo..<hi].reduce(0, +) / Double(hi - lo)
    }
}

/// The daemon's default database (`DatabaseConfig.resolvedPath`: `$STATE_DIRECTORY`, root's
/// `/var/lib/portwatch`, `$XDG_STATE_HOME/portwatch` or `~/.local/state/portwatch`).
func defaultHistoryPath(environment: [String: String] = ProcessInfo.processInfo.environment,
                        isRoot: Bool = geteuid() == 0) -> String {
    DatabaseConfig().resolvedPath(environment: environment, isRoot: isRoot)
}

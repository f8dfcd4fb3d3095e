import ArgumentParser
import Foundation
import PortwatchCore
import PortwatchMonitor
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Set by SIGINT/SIGTERM while `events --follow` polls (an atomic store is async-signal-safe).
private let followStopped = Atomic<Bool>(false)

/// `portwatch events`: the daemon's event log, read straight from its database.
struct Events: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "The event log: listeners appearing and disappearing, alerts, expectations (read-only).")

    @Option(name: .long, help: "How far back (default 1h): 30m, 24h, 7d.")
    var since: String = "1h"

    @Option(name: .long, help: "Only events of this port number.")
    var port: UInt16?

    @Option(name: .long, help: ArgumentHelp(
        "Only events of one network namespace the daemon watched: host (its own), a name from /run/netns, net:[INODE] or pid:PID.",
        valueName: "NAME"))
    var netns: String?

    @Flag(name: .long, help: "Keep printing new events until interrupted (JSON Lines with --json).")
    var follow = false

    @Option(name: .long, help: "History database (default: the daemon's).")
    var db: String?

    @OptionGroup var output: OutputOptions

    /// More than any screen holds; `--since` narrows it.
    private static let limit = 10_000

    func run() throws {
        let span = try durationSeconds(since, option: "--since")
        if span <= 0 { throw PortwatchError.usage("--since: must be more than 0") }
        let namespace = try netns.map { text throws(PortwatchError) in
            NamespaceFilter(label: try HistoryNamespace.parse(text, option: "--netns"))
        }
        let store = try HistoryStore.openReadOnly(path: db ?? defaultHistoryPath())
        let from = Date().timeIntervalSince1970 - span
        guard follow else {
            let events = try store.events(since: from, port: port, netns: namespace, limit: Self.limit)
            if output.json {
                output.print { w in w.value(["events": .array(events.map(\.json))]) }
            } else if events.isEmpty {
                emit("no events in the last \(since)")
            } else {
                emit(events.map(line).joined(separator: "\n"))
            }
            return
        }
        signal(SIGINT) { _ in followStopped.store(true, ordering: .relaxed) }
        signal(SIGTERM) { _ in followStopped.store(true, ordering: .relaxed) }
        var lastID: Int64 = 0
        while !followStopped.load(ordering: .relaxed) {
            for stored in try store.events(afterID: lastID, since: from, port: port, netns: namespace, limit: Self.limit) {
                emit(output.json ? stored.event.json.serialized() : line(stored.event))
                lastID = stored.id
            }
            // Poll twice a second, checking for a signal every 50 ms.
            for _ in 0..<10 where !followStopped.load(ordering: .relaxed) { usleep(50_000) }
        }
    }

    private func line(_ e: MonitorEvent) -> String {
        // Another namespace's port reads as the daemon names it elsewhere ("web tcp/8080").
        let port = e.port.map { "\(e.proto?.rawValue ?? "tcp")/\($0)" }
        let where_ = port.map { p in e.namespace.map { "\($0) \(p)" } ?? p } ?? "-"
        return "\(rfc3339(e.time))  \(e.kind.rawValue)  \(where_)  \(printable(e.message))"
    }
}

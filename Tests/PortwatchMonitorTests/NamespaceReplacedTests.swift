// A network namespace deleted and made again under the same name between two samples (a new
// inode under an old label): the engine's listener events and alerts treat it as a new
// namespace, while a namespace that stays (or the daemon's own) carries on as before.

import PortwatchCore
@testable import PortwatchMonitor
import Testing

/// A listening tcp/`port` row of `namespace` (nil: the daemon's own) with `established` connections.
private func row(_ port: UInt16, namespace: String?, established: Int) -> PortSample {
    var counts = ConnectionCounts()
    counts.established = established
    var s = PortSample(time: 0, proto: .tcp, port: port, listening: true, addresses: ["127.0.0.1"],
                       connections: counts, acceptQueue: 0, acceptQueueMax: 16, windowSeconds: 1)
    s.namespace = namespace
    s.executables = ["/usr/bin/python3"]
    return s
}

@Suite struct NamespaceReplacedEngineTests {
    private func engine() -> RuleEngine {
        var config = MonitorConfig()
        config.interval = .seconds(1)
        config.detectors.ownerChanged = true
        config.rules = [RuleConfig(name: "crowded", ports: "8080", metric: .connectionsInState("established"), above: 0)]
        return RuleEngine(config: config, instance: "h", everListened: [], firstStart: true)
    }

    @Test func aNamespaceMadeAgainStopsItsOldListenersStartsTheNewAndRestartsItsAlerts() {
        var engine = engine()
        let rows = [nil, "web", "db"].map { row(8080, namespace: $0, established: 2) }
        let first = engine.evaluate(rows, at: 100)
        #expect(first.notifications.count == 3)
        #expect(engine.evaluate(rows, at: 101).events.isEmpty)

        // web is made again: the same port listens in the new one, with connections too.
        let out = engine.evaluate(rows, at: 102, replacing: ["web"])
        let kinds = out.events.map { "\($0.kind.rawValue) \($0.namespace ?? "host")" }
        #expect(kinds == ["listener_stopped web", "listener_started web", "alert_resolved web", "alert_firing web"], "\(kinds)")
        #expect(out.notifications.map(\.state) == [.resolved, .firing])
        #expect(out.notifications.allSatisfy { $0.namespace == "web" })
        // The new namespace's alert starts at the re-creation, the others keep their start.
        let since = Dictionary(engine.activeAlerts.map { ($0.namespace ?? "host", $0.since) }, uniquingKeysWith: { a, _ in a })
        #expect(since == ["host": 100, "web": 102, "db": 100])

        // The next sample of the same rows is quiet again.
        #expect(engine.evaluate(rows, at: 103).events.isEmpty)
    }

    @Test func withoutAReplacementTheSameRowsAreQuiet() {
        var engine = engine()
        let rows = [nil, "web"].map { row(8080, namespace: $0, established: 1) }
        _ = engine.evaluate(rows, at: 100)
        // A label that matches nothing, or the host's rows, never count as replaced.
        #expect(engine.evaluate(rows, at: 101, replacing: ["db"]).events.isEmpty)
        #expect(engine.evaluate(rows, at: 102, replacing: ["host"]).events.isEmpty)
    }

    @Test func aReplacedNamespaceWithoutTheListenerOnlyStopsIt() {
        var engine = engine()
        _ = engine.evaluate([row(8080, namespace: "web", established: 1)], at: 100)
        let out = engine.evaluate([], at: 101, replacing: ["web"])
        #expect(out.events.map(\.kind) == [.listenerStopped, .alertResolved], "\(out.events)")
        #expect(engine.activeAlerts.isEmpty)
    }
}

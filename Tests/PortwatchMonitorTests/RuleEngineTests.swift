import Testing
@testable import PortwatchMonitor
import PortwatchCore

/// Synthetic samples every 5 s, driven through the engine the way the daemon drives it.
private struct Clock {
    var now: Double = 1_800_000_000
    let step: Double = 5
    mutating func tick() -> Double { now += step; return now }
}

private func row(_ port: UInt16, listening: Bool = true, established: Int = 0, window: Double = 5,
                 executables: [String] = ["/usr/sbin/web"], proto: TransportProtocol = .tcp) -> PortSample {
    var counts = ConnectionCounts()
    counts.established = established
    return PortSample(time: 0, proto: proto, port: port, listening: listening, addresses: listening ? ["0.0.0.0"] : [],
                      connections: counts, windowSeconds: window,
                      owners: executables.map { "\($0.split(separator: "/").last ?? "")[1]" }, executables: executables)
}

private func config(rules: [RuleConfig] = [], ports: [PortExpectation] = []) -> MonitorConfig {
    var c = MonitorConfig()
    c.interval = .seconds(5)
    c.rules = rules
    c.ports = ports
    return c
}

private func kinds(_ o: RuleOutcome) -> [EventKind] { o.events.map(\.kind) }

@Suite struct RuleEngineTests {
    @Test func thresholdGoesPendingThenFiresAfterFor() {
        let rule = RuleConfig(name: "crowded", ports: "443", metric: .connectionsInState("established"),
                              above: 100, forDuration: .seconds(20))
        var engine = RuleEngine(config: config(rules: [rule]), instance: "host1", everListened: [], firstStart: true)
        var clock = Clock()
        _ = engine.evaluate([row(443, established: 10)], at: clock.now)
        // Condition true from here; for: 20 s is four intervals.
        let start = clock.tick()
        var t = start
        var firedAt: Double?
        while t <= start + 40 {
            let out = engine.evaluate([row(443, established: 500), row(80, established: 500)], at: t)
            if let n = out.notifications.first {
                #expect(firedAt == nil, "a firing alert is announced once")
                #expect(n.state == .firing)
                #expect(n.rule == "crowded" && n.port == 443 && n.proto == .tcp && n.value == 500 && n.threshold == 100)
                #expect(n.instance == "host1")
                #expect(kinds(out) == [.alertFiring])
                firedAt = t
            } else if firedAt == nil {
                #expect(engine.activeAlerts.map(\.state) == [.pending])
            }
            t = clock.tick()
        }
        #expect(firedAt == start + 20)
        // Port 80 is outside the rule's filter.
        #expect(engine.activeAlerts.map(\.port) == [443])
    }

    @Test func pendingThatClearsNeverFires() {
        let rule = RuleConfig(name: "r", metric: .connections, above: 5, forDuration: .seconds(15))
        var engine = RuleEngine(config: config(rules: [rule]), instance: "h", everListened: [], firstStart: true)
        var clock = Clock()
        var notes: [Alert] = []
        for i in 0..<40 {
            // Two intervals over, one under: never over for 15 s in a row.
            notes += engine.evaluate([row(8080, established: i % 3 == 2 ? 1 : 9)], at: clock.tick()).notifications
        }
        #expect(notes.isEmpty)
    }

    @Test func oscillationAroundThresholdDoesNotFlap() {
        let rule = RuleConfig(name: "r", ports: "8080", metric: .connections, above: 50)
        var engine = RuleEngine(config: config(rules: [rule]), instance: "h", everListened: [], firstStart: true)
        var clock = Clock()
        var notes: [Alert] = []
        for i in 0..<60 {
            // 51, 49, 51, 49, ...: the condition is false for one interval at a time, less than keep_firing_for (15 s).
            notes += engine.evaluate([row(8080, established: i % 2 == 0 ? 51 : 49)], at: clock.tick()).notifications
        }
        #expect(notes.map(\.state) == [.firing])
        #expect(engine.activeAlerts.map(\.state) == [.firing])
    }

    @Test func resolvesOnlyAfterKeepFiringFor() {
        let rule = RuleConfig(name: "r", ports: "8080", metric: .connections, above: 50)
        var engine = RuleEngine(config: config(rules: [rule]), instance: "h", everListened: [], firstStart: true)
        var clock = Clock()
        #expect(engine.evaluate([row(8080, established: 60)], at: clock.tick()).notifications.map(\.state) == [.firing])
        let clearedAt = clock.tick()
        #expect(engine.evaluate([row(8080, established: 10)], at: clearedAt).notifications.isEmpty)
        var resolvedAt: Double?
        for _ in 0..<6 where resolvedAt == nil {
            let t = clock.tick()
            let out = engine.evaluate([row(8080, established: 10)], at: t)
            if let n = out.notifications.first {
                #expect(n.state == .resolved && n.since == t)
                #expect(kinds(out) == [.alertResolved])
                resolvedAt = t
            }
        }
        // Default keep_firing_for: three intervals of 5 s.
        #expect(resolvedAt == clearedAt + 15)
        #expect(engine.activeAlerts.isEmpty)
    }

    @Test func customKeepFiringForAndBelowRule() {
        let rule = RuleConfig(name: "idle", ports: "9000", metric: .receivedBps, below: 100,
                              keepFiringFor: .seconds(30))
        var engine = RuleEngine(config: config(rules: [rule]), instance: "h", everListened: [], firstStart: true)
        var clock = Clock()
        // The first sample has no window: a rate rule must not fire on its zero.
        #expect(engine.evaluate([row(9000, window: 0)], at: clock.now).notifications.isEmpty)
        var busy = row(9000); busy.bytesReceived = 10_000
        #expect(engine.evaluate([busy], at: clock.tick()).notifications.isEmpty)
        #expect(engine.evaluate([row(9000)], at: clock.tick()).notifications.map(\.state) == [.firing])
        let cleared = clock.tick()
        var resolvedAt: Double?
        _ = engine.evaluate([busy], at: cleared)
        for _ in 0..<10 where resolvedAt == nil {
            let t = clock.tick()
            if engine.evaluate([busy], at: t).notifications.first?.state == .resolved { resolvedAt = t }
        }
        #expect(resolvedAt == cleared + 30)
    }

    @Test func alertOfAVanishedRowResolvesAfterKeepFiringFor() {
        let rule = RuleConfig(name: "r", metric: .connections, above: 5)
        var engine = RuleEngine(config: config(rules: [rule]), instance: "h", everListened: [], firstStart: true)
        var clock = Clock()
        #expect(engine.evaluate([row(7000, established: 9)], at: clock.tick()).notifications.count == 1)
        let gone = clock.tick()
        var resolvedAt: Double?
        _ = engine.evaluate([], at: gone)
        for _ in 0..<6 where resolvedAt == nil {
            let t = clock.tick()
            if engine.evaluate([], at: t).notifications.first?.state == .resolved { resolvedAt = t }
        }
        #expect(resolvedAt == gone + 15)
    }

    @Test func expectationsFailRightAfterStartAndEachTimeTheyStopBeingMet() {
        let ports = [PortExpectation(port: 443, name: "web", expect: .listening),
                     PortExpectation(port: 23, expect: .closed),
                     PortExpectation(port: 8080, maxConnections: 3)]
        var engine = RuleEngine(config: config(ports: ports), instance: "h", everListened: [], firstStart: true)
        var clock = Clock()
        // Start: 443 does not listen (failed), 23 is closed (met, silent), 8080 under its ceiling (silent).
        let first = engine.evaluate([row(8080, established: 1)], at: clock.now)
        #expect(first.events.map(\.kind) == [.expectationFailed, .alertFiring])
        #expect(first.events.first?.port == 443 && first.events.first?.details["name"] == "web")
        #expect(first.notifications.map(\.rule) == ["expect_listening"])
        // Still unmet: no repeat.
        #expect(engine.evaluate([row(8080, established: 1)], at: clock.tick()).events.isEmpty)
        // 443 starts listening: met again.
        let met = engine.evaluate([row(443), row(8080, established: 1)], at: clock.tick())
        #expect(met.events.filter { $0.kind == .expectationMet }.map(\.port) == [443])
        #expect(met.notifications.map(\.state) == [.resolved])
        // 23 opens and 8080 goes over: two failures at once.
        let bad = engine.evaluate([row(443), row(23), row(8080, established: 4)], at: clock.tick())
        let failed = bad.events.filter { $0.kind == .expectationFailed }.map(\.port)
        #expect(failed == [23, 8080])
        #expect(bad.events.first { $0.port == 8080 && $0.kind == .expectationFailed }?.message.contains("4 connections") == true)
        // 443 stops listening: a met expectation stops being met.
        let again = engine.evaluate([row(23), row(8080, established: 4)], at: clock.tick())
        #expect(again.events.filter { $0.kind == .expectationFailed }.map(\.port) == [443])
    }

    @Test func listenerStartAndStopAfterTheBaseline() {
        var engine = RuleEngine(config: config(), instance: "h", everListened: [], firstStart: true)
        var clock = Clock()
        #expect(engine.evaluate([row(22), row(80)], at: clock.now).events.isEmpty, "the first sample is the baseline")
        let started = engine.evaluate([row(22), row(80), row(8443)], at: clock.tick())
        #expect(started.events.filter { $0.kind == .listenerStarted }.map(\.port) == [8443])
        let stopped = engine.evaluate([row(22), row(8443), row(80, listening: false, established: 2)], at: clock.tick())
        #expect(kinds(stopped) == [.listenerStopped])
        #expect(stopped.events.first?.port == 80)
    }

    @Test func newListenerOnFirstStartIgnoresWhatListenedAtStart() {
        var engine = RuleEngine(config: config(), instance: "h", everListened: [], firstStart: true)
        var clock = Clock()
        #expect(engine.evaluate([row(22)], at: clock.now).events.isEmpty)
        let out = engine.evaluate([row(22), row(5555)], at: clock.tick())
        #expect(kinds(out).sorted { $0.rawValue < $1.rawValue } == [.listenerStarted, .newListener])
        // Stopping and starting again is not new any more.
        _ = engine.evaluate([row(22)], at: clock.tick())
        #expect(kinds(engine.evaluate([row(22), row(5555)], at: clock.tick())) == [.listenerStarted])
    }

    @Test func newListenerWithHistoryFlagsPortsNeverSeenEvenAtStart() {
        let history: Set<MonitoredPort> = [MonitoredPort(proto: .tcp, port: 22)]
        var engine = RuleEngine(config: config(), instance: "h", everListened: history, firstStart: false)
        var clock = Clock()
        // 6000 opened while the daemon was down and never listened before: new.
        let first = engine.evaluate([row(22), row(6000)], at: clock.now)
        #expect(kinds(first) == [.newListener])
        #expect(first.events.first?.port == 6000)
        // UDP 6000 is another port.
        let udp = engine.evaluate([row(22), row(6000), row(6000, proto: .udp)], at: clock.tick())
        #expect(udp.events.filter { $0.kind == .newListener }.map(\.proto) == [.udp])
    }

    @Test func newListenerCanBeTurnedOff() {
        var c = config()
        c.detectors.newListener = false
        var engine = RuleEngine(config: c, instance: "h", everListened: [], firstStart: false)
        #expect(engine.evaluate([row(22)], at: 1).events.isEmpty)
    }

    @Test func ownerChangedOnAnotherExecutableNotOnAnotherPid() {
        var engine = RuleEngine(config: config(), instance: "h", everListened: [], firstStart: true)
        var clock = Clock()
        _ = engine.evaluate([row(8080, executables: ["/usr/sbin/nginx"])], at: clock.now)
        // Same executable, new pid (a reload): nothing.
        var restarted = row(8080, executables: ["/usr/sbin/nginx"])
        restarted.owners = ["nginx[999]"]
        #expect(engine.evaluate([restarted], at: clock.tick()).events.isEmpty)
        // Owner unknown for a sample (no permission): nothing, and the last known owner is kept.
        #expect(engine.evaluate([row(8080, executables: [])], at: clock.tick()).events.isEmpty)
        let changed = engine.evaluate([row(8080, executables: ["/usr/bin/python3"])], at: clock.tick())
        #expect(kinds(changed) == [.ownerChanged])
        #expect(changed.events.first?.details["previous_executables"] == "/usr/sbin/nginx")
        #expect(changed.events.first?.details["executables"] == "/usr/bin/python3")
    }

    @Test func reloadKeepsStateOfRulesThatStillExist() {
        let keep = RuleConfig(name: "keep", metric: .connections, above: 5)
        let drop = RuleConfig(name: "drop", metric: .connections, above: 5)
        var engine = RuleEngine(config: config(rules: [keep, drop]), instance: "h", everListened: [], firstStart: true)
        #expect(engine.evaluate([row(1000, established: 9)], at: 10).notifications.count == 2)
        var changed = keep
        changed.above = 6
        let out = engine.reload(config(rules: [changed]))
        #expect(out.notifications.map(\.rule) == ["drop"])
        #expect(out.notifications.map(\.state) == [.resolved])
        #expect(out.notifications.first?.since == 10, "dated at the last sample")
        #expect(kinds(out) == [.alertResolved])
        // "keep" is still firing: no second announcement.
        #expect(engine.evaluate([row(1000, established: 9)], at: 20).notifications.isEmpty)
        #expect(engine.activeAlerts.map(\.rule) == ["keep"])
    }

    @Test func anomalyRuleWithoutPortsLearnsListeningPortsOnly() {
        var c = config(rules: [RuleConfig(name: "a", metric: .connections, anomaly: AnomalyConfig(sigma: 4, warmup: .seconds(60)))])
        c.detectors.newListener = false
        var engine = RuleEngine(config: c, instance: "h", everListened: [], firstStart: true)
        var clock = Clock()
        var notes: [Alert] = []
        // A listener steady at 10, a client port jumping wildly: only the listener is modelled.
        for i in 0..<200 {
            notes += engine.evaluate([row(80, established: 10), row(45000, listening: false, established: i % 2 == 0 ? 1 : 400)],
                                     at: clock.tick()).notifications
        }
        #expect(notes.isEmpty)
        notes += engine.evaluate([row(80, established: 500)], at: clock.tick()).notifications
        #expect(notes.map(\.port) == [80])
    }
}

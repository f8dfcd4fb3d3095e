// Alerts and events per network namespace (issue 9): the same rule on the same port number in
// the host and in two other namespaces is three alerts, told apart by the engine, by a real
// Alertmanager (the `netns` label), by the alert log and by the event log's `netns` filter.

import Foundation
import AsyncHTTPClient
import PortwatchCore
@testable import PortwatchMonitor
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A listening tcp/`port` row of `namespace` (nil: the daemon's own) with `established` connections.
private func row(_ port: UInt16, namespace: String?, established: Int) -> PortSample {
    var counts = ConnectionCounts()
    counts.established = established
    var s = PortSample(time: 0, proto: .tcp, port: port, listening: true, addresses: ["127.0.0.1"],
                       connections: counts, acceptQueue: 0, acceptQueueMax: 16, windowSeconds: 5)
    s.namespace = namespace
    return s
}

private func alert(_ namespace: String?, state: AlertState = .firing, since: Double) -> Alert {
    Alert(rule: "pw-ns-crowded", state: state, severity: "warning", proto: .tcp, port: 8080,
          metric: "connections.established", value: 3, threshold: 0, since: since,
          message: "connections.established on \(namespace.map { "\($0) " } ?? "")tcp/8080 is 3, above 0",
          instance: "test-host", namespace: namespace)
}

@Suite struct NamespaceAlertEngineTests {
    @Test func oneRuleOnOnePortIsOneAlertPerNamespaceAndEachResolvesAlone() {
        var config = MonitorConfig()
        config.interval = .seconds(5)
        config.rules = [RuleConfig(name: "crowded", ports: "8080", metric: .connectionsInState("established"), above: 0)]
        var engine = RuleEngine(config: config, instance: "h", everListened: [], firstStart: true)
        let spaces: [String?] = [nil, "web", "db"]
        var now = 1_800_000_000.0
        let fired = engine.evaluate(spaces.map { row(8080, namespace: $0, established: 2) }, at: now)
        #expect(fired.notifications.count == 3)
        #expect(Set(fired.notifications.map(\.namespace)) == Set(spaces))
        #expect(fired.notifications.allSatisfy { $0.state == .firing && $0.port == 8080 })
        #expect(fired.notifications.first { $0.namespace == "web" }?.message.contains("web tcp/8080") == true)
        // Each alert_firing event names its namespace (the host's none).
        let events = fired.events.filter { $0.kind == .alertFiring }
        #expect(Set(events.map(\.namespace)) == Set(spaces))
        #expect(engine.activeAlerts.count == 3)

        // web's connections end: after keep_firing_for (three intervals) only web's alert resolves.
        var resolved: [Alert] = []
        for _ in 0..<4 {
            now += 5
            let out = engine.evaluate([row(8080, namespace: nil, established: 2), row(8080, namespace: "web", established: 0),
                                       row(8080, namespace: "db", established: 2)], at: now)
            resolved += out.notifications
        }
        #expect(resolved.map(\.namespace) == ["web"])
        #expect(resolved.map(\.state) == [.resolved])
        #expect(Set(engine.activeAlerts.map(\.namespace)) == [nil, "db"])
    }

    @Test func theAlertDocumentCarriesNetnsOnlyForAnotherNamespace() throws {
        let theirs = alert("web", since: 100).json.serialized()
        #expect(theirs.contains(#""protocol":"tcp","port":8080,"netns":"web","metric""#), "\(theirs)")
        #expect(!alert(nil, since: 100).json.serialized().contains("netns"))
        let labels = AlertmanagerChannel.document(alert("web", since: 100), startsAt: 100).serialized()
        #expect(labels.contains(#""labels":{"alertname":"pw-ns-crowded","protocol":"tcp","port":"8080","netns":"web","severity":"warning","instance":"test-host"}"#), "\(labels)")
        #expect(!AlertmanagerChannel.document(alert(nil, since: 100), startsAt: 100).serialized().contains("netns"))
    }

    @Test(.enabled(if: AlertmanagerProcess.binary != nil, "prometheus-alertmanager is not installed (Debian package prometheus-alertmanager)"))
    func aRealAlertmanagerKeepsOneAlertPerNamespace() async throws {
        let am = try await AlertmanagerProcess.start()
        defer { am.stop() }
        let channel = AlertmanagerChannel(url: am.url, poster: HTTPPoster(timeout: .seconds(5), attempts: 4,
                                                                           backoff: .milliseconds(50), maxBackoff: .seconds(2)))
        let started = Double(Int(Date().timeIntervalSince1970))
        for ns in [nil, "web", "db"] { try await channel.deliver(alert(ns, since: started)) }

        func ours() async throws -> [[String: String]] {
            try await am.alerts().compactMap { $0["labels"] as? [String: String] }.filter { $0["alertname"] == "pw-ns-crowded" }
        }
        let listed = try await ours()
        #expect(listed.count == 3, "\(listed)")
        #expect(Set(listed.map { $0["netns"] ?? "host" }) == ["host", "web", "db"])
        #expect(listed.first { $0["netns"] == nil }?.keys.sorted() == ["alertname", "instance", "port", "protocol", "severity"])

        // web resolves: Alertmanager drops web's alert only; the refresh re-sends the other two.
        try await channel.deliver(alert("web", state: .resolved, since: Date().timeIntervalSince1970))
        try await channel.refresh()
        let after = try await ours()
        #expect(Set(after.map { $0["netns"] ?? "host" }) == ["host", "db"], "\(after)")
    }
}

@Suite struct NamespaceExpectationTests {
    /// `ports: [{port: 5432, netns: db, expect: listening}]` is about db's 5432 only: the host's
    /// listener on 5432 does not meet it, and db's listener does.
    @Test func aPortExpectationWithNetnsJudgesThatNamespacesRowOnly() throws {
        let config = try ConfigLoader.parse("""
            interval: 5s
            namespaces: [db]
            ports:
              - {port: 5432, netns: db, expect: listening, name: pg}
              - {port: 5432, expect: closed}
            """, file: "x.yml")
        #expect(config.ports.map(\.key) == [MonitoredPort(proto: .tcp, port: 5432, namespace: "db"),
                                            MonitoredPort(proto: .tcp, port: 5432)])
        var engine = RuleEngine(config: config, instance: "h", everListened: [], firstStart: true)
        var now = 1_800_000_000.0
        // Only the host listens: db's expectation fails, the host's `closed` fails too, apart.
        let first = engine.evaluate([row(5432, namespace: nil, established: 0)], at: now)
        let failed = first.events.filter { $0.kind == .expectationFailed }
        #expect(Set(failed.map(\.namespace)) == [nil, "db"], "\(failed)")
        #expect(failed.first { $0.namespace == "db" }?.message.hasPrefix("db tcp/5432 (pg) is expected to be listening") == true)
        #expect(Set(first.notifications.map(\.namespace)) == [nil, "db"])
        #expect(first.notifications.first { $0.namespace == "db" }?.rule == "expect_listening")

        // db's listener comes: its expectation is met and its alert resolves; the host's stays.
        now += 5
        let second = engine.evaluate([row(5432, namespace: nil, established: 0), row(5432, namespace: "db", established: 0)], at: now)
        #expect(second.events.filter { $0.kind == .expectationMet }.map(\.namespace) == ["db"])
        #expect(second.notifications.map(\.namespace) == ["db"])
        #expect(second.notifications.map(\.state) == [.resolved])
        #expect(engine.activeAlerts.map(\.namespace) == [nil])
    }

    @Test(arguments: [
        ("namespaces: [web]\nports:\n  - {port: 1, netns: db, expect: listening}\n", 3, 22, "is not among namespaces: [web]"),
        ("ports:\n  - {port: 1, netns: db, expect: listening}\n", 2, 22, "watches no other network namespace"),
        ("namespaces: all\nports:\n  - {port: 1, netns: pid:1, expect: listening}\n", 3, 22, "a pid names a namespace only while"),
        ("namespaces: all\nports:\n  - {port: 1, netns: a/b}\n", 3, 22, "expected host, a name from /run/netns or net:[INODE]"),
        ("namespaces: all\nports:\n  - {port: 1, netns: db}\n  - {port: 1, netns: db}\n", 4, 12, "1/tcp in netns db is already listed"),
    ])
    func aBadPortNetnsNamesItsPlace(_ yaml: String, _ line: Int, _ column: Int, _ phrase: String) {
        expectOneConfigProblem(yaml, file: "x.yml", line: line, column: column, phrase: phrase)
    }

    @Test func theSamePortInAnotherNamespaceIsNotADuplicate() throws {
        let config = try ConfigLoader.parse("namespaces: all\nports:\n  - {port: 1, netns: host}\n  - {port: 1, netns: 'net:[4026531840]'}\n",
                                            file: "x.yml")
        #expect(config.ports.map(\.namespace) == [nil, "net:[4026531840]"])
    }
}

@Suite struct NamespaceEventLogTests {
    @Test func theEventLogFiltersByNamespaceAndTheAlertLogKeepsIt() throws {
        let dir = NSTemporaryDirectory() + "pw-nsalerts-\(getpid())-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let store = try HistoryStore(path: dir + "/h.sqlite")
        let t = 1_800_000_000.0
        var config = MonitorConfig()
        config.rules = [RuleConfig(name: "crowded", ports: "8080", metric: .connectionsInState("established"), above: 0)]
        var engine = RuleEngine(config: config, instance: "h", everListened: [], firstStart: false)
        let samples = [nil, "web", "db"].map { row(8080, namespace: $0, established: 1) }
        let first = engine.evaluate(samples, at: t)
        try store.write(samples: samples, events: first.events)
        try store.recordAlerts(first.notifications)
        // A namespace event without a port, and an event about nothing in particular.
        try store.write(samples: [], events: [
            MonitorEvent(time: t + 1, kind: .namespaceAdded, message: "network namespace web appeared", details: ["netns": "web"]),
            MonitorEvent(time: t + 2, kind: .probeFailed, message: "probe of 127.0.0.1:1 failed"),
        ])

        let web = try store.events(since: t - 1, port: nil, netns: .label("web"), limit: 100)
        #expect(web.contains { $0.kind == .alertFiring } && web.contains { $0.kind == .namespaceAdded }, "\(web)")
        #expect(!web.isEmpty && web.allSatisfy { $0.namespace == "web" })
        let host = try store.events(since: t - 1, port: nil, netns: .host, limit: 100)
        #expect(host.contains { $0.kind == .alertFiring } && host.contains { $0.kind == .probeFailed })
        #expect(host.allSatisfy { $0.namespace == nil })
        let db = try store.events(since: t - 1, port: 8080, netns: .label("db"), limit: 100)
        #expect(db.contains { $0.kind == .alertFiring } && db.allSatisfy { $0.namespace == "db" && $0.port == 8080 })
        #expect(try store.events(since: t - 1, port: nil, netns: .label("nowhere"), limit: 100).isEmpty)
        #expect(try store.events(since: t - 1, port: nil, limit: 100).count == host.count + web.count + db.count)

        let stored = try store.alerts(since: t - 1, limit: 100)
        #expect(stored.count == 3)
        #expect(Set(stored.map(\.namespace)) == [nil, "web", "db"])
        #expect(stored.allSatisfy { $0.port == 8080 && $0.proto == .tcp })
    }
}

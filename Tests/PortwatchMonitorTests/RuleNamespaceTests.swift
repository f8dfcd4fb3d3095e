// A rule's `netns:` (issue 9): a rule judges the rows of the namespaces it names only, checked in
// the config as a port's `netns:` is.

import PortwatchCore
@testable import PortwatchMonitor
import Testing

/// A listening tcp/`port` row of `namespace` (nil: the daemon's own) with `established` connections.
private func row(_ port: UInt16, namespace: String?, established: Int) -> PortSample {
    var counts = ConnectionCounts()
    counts.established = established
    var s = PortSample(time: 0, proto: .tcp, port: port, listening: true, addresses: ["127.0.0.1"],
                       connections: counts, acceptQueue: 0, acceptQueueMax: 16, windowSeconds: 5)
    s.namespace = namespace
    return s
}

@Suite struct RuleNamespaceTests {
    /// The same port, crowded in the host, web and db: `netns: [web]` fires for web alone, a rule
    /// for `[host, db]` for those two, a rule without `netns:` for all three.
    @Test func aRuleWithNetnsJudgesOnlyThoseNamespacesRows() throws {
        let config = try ConfigLoader.parse("""
            interval: 5s
            namespaces: [web, db]
            rules:
              - {name: web-crowded, ports: "8080", metric: connections.established, above: 0, netns: [web]}
              - {name: outer-crowded, ports: "8080", metric: connections.established, above: 0, netns: [host, db]}
              - {name: crowded, ports: "8080", metric: connections.established, above: 0}
            """, file: "x.yml")
        #expect(config.rules.map(\.namespaces) == [["web"], [nil, "db"], nil])
        var engine = RuleEngine(config: config, instance: "h", everListened: [], firstStart: true)
        let now = 1_800_000_000.0
        let out = engine.evaluate([nil, "web", "db"].map { row(8080, namespace: $0, established: 2) }, at: now)
        func fired(_ rule: String) -> Set<String?> {
            Set(out.notifications.filter { $0.rule == rule && $0.state == .firing }.map(\.namespace))
        }
        #expect(fired("web-crowded") == ["web"], "\(out.notifications)")
        #expect(fired("outer-crowded") == [nil, "db"])
        #expect(fired("crowded") == [nil, "web", "db"])
        #expect(out.notifications.count == 6)
        #expect(engine.activeAlerts.filter { $0.rule == "web-crowded" }.map(\.namespace) == ["web"])
    }

    /// A reload that narrows a rule's `netns:` resolves the alerts of the namespaces it dropped at
    /// once (dated at the last sample) and keeps the others firing.
    @Test func narrowingNetnsOnReloadResolvesTheDroppedNamespacesAlerts() throws {
        let yaml = { (netns: String) in
            "interval: 5s\nnamespaces: [web, db]\nrules:\n"
                + "  - {name: crowded, ports: \"8080\", metric: connections.established, above: 0\(netns)}\n"
        }
        var engine = RuleEngine(config: try ConfigLoader.parse(yaml(""), file: "x.yml"), instance: "h",
                                everListened: [], firstStart: true)
        let now = 1_800_000_000.0
        let first = engine.evaluate([nil, "web", "db"].map { row(8080, namespace: $0, established: 2) }, at: now)
        #expect(first.notifications.count == 3)
        let reloaded = engine.reload(try ConfigLoader.parse(yaml(", netns: web"), file: "x.yml"))
        #expect(reloaded.notifications.map(\.state) == [.resolved, .resolved])
        #expect(Set(reloaded.notifications.map(\.namespace)) == [nil, "db"])
        #expect(reloaded.notifications.allSatisfy { $0.since == now })
        #expect(engine.activeAlerts.map(\.namespace) == ["web"])
        // The next sample judges web alone: nothing new fires for the host or db.
        let next = engine.evaluate([nil, "web", "db"].map { row(8080, namespace: $0, established: 2) }, at: now + 5)
        #expect(next.notifications.isEmpty, "\(next.notifications)")
    }

    @Test func aSingleLabelAndInodeLabelsAreRead() throws {
        let config = try ConfigLoader.parse("""
            namespaces: all
            rules:
              - {name: a, metric: connections, above: 1, netns: web}
              - {name: b, metric: connections, above: 1, netns: host}
              - {name: c, metric: connections, above: 1, netns: ['net:[4026531840]', web]}
            """, file: "x.yml")
        #expect(config.rules.map(\.namespaces) == [["web"], [nil], ["net:[4026531840]", "web"]])
    }

    @Test(arguments: [
        ("namespaces: [web]\nrules:\n  - {name: r, metric: connections, above: 1, netns: db}\n", 3, 53,
         "rules[0].netns: 'db' is not among namespaces: [web]"),
        ("namespaces: [web]\nrules:\n  - {name: r, metric: connections, above: 1, netns: [web, db]}\n", 3, 59,
         "rules[0].netns: 'db' is not among namespaces: [web]"),
        ("rules:\n  - {name: r, metric: connections, above: 1, netns: web}\n", 2, 53,
         "watches no other network namespace"),
        ("namespaces: all\nrules:\n  - {name: r, metric: connections, above: 1, netns: pid:1}\n", 3, 53,
         "a pid names a namespace only while"),
        ("namespaces: all\nrules:\n  - {name: r, metric: connections, above: 1, netns: [web, a/b]}\n", 3, 59,
         "expected host, a name from /run/netns or net:[INODE]"),
        ("namespaces: all\nrules:\n  - {name: r, metric: connections, above: 1, netns: []}\n", 3, 53,
         "empty list; leave netns out"),
        ("namespaces: all\nrules:\n  - {name: r, metric: connections, above: 1, netns: [web, web]}\n", 3, 59,
         "'web' is listed twice"),
        ("namespaces: all\nprobes:\n  - {target: '127.0.0.1:1'}\nrules:\n  - {name: r, metric: probe_success, below: 1, netns: web}\n", 5, 48,
         "'netns' does not apply to probe_success"),
    ])
    func aBadRuleNetnsNamesItsPlace(_ yaml: String, _ line: Int, _ column: Int, _ phrase: String) {
        expectOneConfigProblem(yaml, file: "x.yml", line: line, column: column, phrase: phrase)
    }
}

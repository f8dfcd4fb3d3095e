// The daemon's alerts, ports and events per network namespace (issue 9), end to end: two real
// named namespaces and the host, each with a listener on the same port number, one rule on that
// port; three alerts apart, each with its namespace, resolved apart; `/api/v1/ports` and
// `/api/v1/events` with and without `?netns=`.

import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite("namespaces: the daemon's alerts, ports and events", .blocking, .serialized,
       .enabled(if: TestEnv.canCreateNamespaces, "needs root, ip and python3 to build network namespaces"))
struct NamespaceAlertTests {
    @Test func oneRuleOnOnePortFiresAndResolvesOncePerNamespace() throws {
        let dir = try makeTemporaryDirectory("netns-alerts")
        defer { removeTree(dir) }
        let lab = try NamespaceLab(names: ["pwa-\(getpid())-web", "pwa-\(getpid())-db"])
        defer { lab.destroy() }
        let (web, db) = (lab.names[0], lab.names[1])
        let port = try Net.freePorts(1)[0]
        let host = try PythonServer.start(["tcp:127.0.0.1:\(port)"])
        defer { host.stop() }
        let inWeb = try lab.startServer(["tcp:127.0.0.1:\(port)"], in: web)
        let inDB = try lab.startServer(["tcp:127.0.0.1:\(port)"], in: db)

        let receiver = try WebhookReceiver()
        defer { receiver.stop() }
        // A listener keeping up with its clients has an accept queue below 1: the rule holds for
        // each of the three listeners as long as it listens.
        let config = dir + "/portwatch.yml"
        try """
            interval: 200ms
            instance: ns-host
            namespaces: [\(web), \(db)]
            ports:
              - {port: \(port), netns: \(web), expect: listening}
            rules:
              - {name: keeping-up, ports: "\(port)", metric: accept_queue, below: 1, severity: info}
            channels:
              - {type: webhook, url: "http://127.0.0.1:\(receiver.port)/hook", timeout: 5s}
            """.write(toFile: config, atomically: true, encoding: .utf8)
        let daemon = try LiveDaemon(["--config", config], directory: dir)
        defer { daemon.stop() }

        // Three alerts, one per namespace, each naming its own (none for the host's).
        func ours(_ alerts: [[String: Any]]) -> [[String: Any]] {
            alerts.filter { $0.string("rule") == "keeping-up" && $0.int("port") == Int(port) }
        }
        let firing = daemon.within(samples: 40) { () -> [[String: Any]]? in
            let listed = ours(daemon.get("/api/v1/alerts")?.json?.objects("alerts") ?? [])
            return listed.count == 3 && listed.allSatisfy({ $0.string("state") == "firing" }) ? listed : nil
        }
        let alerts = try #require(firing, "not three firing alerts: \(daemon.log.text.suffix(3000))")
        #expect(Set(alerts.map { $0.string("netns") ?? "host" }) == ["host", web, db])
        #expect(alerts.first { $0.string("netns") == web }?.string("message")?.contains(web) == true)
        for (query, label) in [(web, web), (db, db), ("host", "host")] {
            let one = ours(daemon.get("/api/v1/alerts?netns=\(query)")?.json?.objects("alerts") ?? [])
            #expect(one.map { $0.string("netns") ?? "host" } == [label], "\(query): \(one)")
        }

        let sent = daemon.within(samples: 20) { () -> [[String: Any]]? in
            let got = ours(receiver.received).filter { $0.string("state") == "firing" }
            return got.count >= 3 ? got : nil
        }
        #expect(Set((sent ?? []).map { $0.string("netns") ?? "host" }) == ["host", web, db], "\(receiver.received)")
        #expect((sent ?? []).count == 3, "each alert is sent once: \(receiver.received)")

        // `/api/v1/ports`: the host's rows as before, then each namespace's, tagged.
        let allResponse = daemon.get("/api/v1/ports")
        let all = try #require(allResponse?.json?.objects("ports"), "\(String(describing: allResponse))")
        let rows = all.filter { $0.int("port") == Int(port) && $0.string("protocol") == "tcp" }
        #expect(Set(rows.map { $0.string("netns") ?? "host" }) == ["host", web, db], "\(rows)")
        let hostRow = try #require(rows.first { $0["netns"] == nil })
        #expect(hostRow["namespace"] == nil)
        #expect(pids(hostRow) == [host.child.pid])
        let webRow = try #require(rows.first { $0.string("netns") == web })
        #expect((webRow["namespace"] as? [String: Any])?.string("name") == web)
        #expect(pids(webRow) == [inWeb.child.pid])

        for (query, label, pid) in [(web, web, inWeb.child.pid), (db, db, inDB.child.pid)] {
            let doc = try #require(daemon.get("/api/v1/ports?netns=\(query)")?.json)
            let list = doc.objects("ports")
            #expect(!list.isEmpty && list.allSatisfy { $0.string("netns") == label }, "\(query): \(list)")
            #expect(list.allSatisfy { ($0["namespace"] as? [String: Any])?.string("name") == label }, "\(query)")
            #expect(list.contains { $0.int("port") == Int(port) && pids($0) == [pid] }, "\(query)")
            let one = try #require(daemon.get("/api/v1/ports/tcp/\(port)?netns=\(query)")?.json)
            #expect(one.string("netns") == label)
            #expect(pids(one) == [pid])
        }
        let hostOnly = try #require(daemon.get("/api/v1/ports?netns=host")?.json?.objects("ports"))
        #expect(hostOnly.allSatisfy { $0["netns"] == nil })
        #expect(hostOnly.contains { $0.int("port") == Int(port) && pids($0) == [host.child.pid] })
        let plain = try #require(daemon.get("/api/v1/ports/tcp/\(port)")?.json)
        #expect(plain["netns"] == nil && pids(plain) == [host.child.pid])

        // Bad values are 400, a namespace not sampled 404, both with a JSON error.
        for (path, status) in [("/api/v1/ports?netns=a%2Fb", 400), ("/api/v1/ports?netns=net:%5Bx%5D", 400),
                               ("/api/v1/ports/tcp/\(port)?netns=", 400), ("/api/v1/events?netns=a%2Fb", 400),
                               ("/api/v1/alerts?netns=pid:0", 400),
                               ("/api/v1/ports?netns=pwa-none-\(getpid())", 404),
                               ("/api/v1/ports/tcp/\(port)?netns=pwa-none-\(getpid())", 404)] {
            let response = try #require(daemon.get(path))
            #expect(response.status == status, "\(path): \(response)")
            #expect(response.json?.string("error")?.isEmpty == false, "\(path): \(response)")
        }

        // The web namespace's listener goes: its alert resolves, the host's and db's keep firing.
        inWeb.stop()
        let resolved = daemon.within(samples: 40) {
            ours(receiver.received).first { $0.string("state") == "resolved" }
        }
        #expect(resolved?.string("netns") == web, "\(receiver.received)")
        let still = ours(daemon.get("/api/v1/alerts")?.json?.objects("alerts") ?? [])
        #expect(Set(still.map { $0.string("netns") ?? "host" }) == ["host", db], "\(still)")
        #expect(ours(receiver.received).filter { $0.string("state") == "resolved" }.count == 1, "\(receiver.received)")

        // Events of one namespace: web's listener stopped and its alert resolved, nothing else's.
        let webEvents = daemon.within(samples: 10) { () -> [[String: Any]]? in
            let list = daemon.get("/api/v1/events?since=1h&netns=\(web)")?.json?.objects("events") ?? []
            return list.contains { $0.string("kind") == "alert_resolved" } ? list : nil
        }
        let mine = try #require(webEvents, "no alert_resolved in \(web)'s events")
        #expect(mine.allSatisfy { $0.string("netns") == web }, "\(mine)")
        #expect(mine.contains { $0.string("kind") == "listener_stopped" && $0.int("port") == Int(port) }, "\(mine)")
        #expect(mine.contains { $0.string("kind") == "alert_firing" && $0.int("port") == Int(port) }, "\(mine)")
        // web's port was expected to listen: that expectation (and only web's) failed.
        #expect(mine.contains { $0.string("kind") == "expectation_failed" && $0.int("port") == Int(port) }, "\(mine)")
        let expectAlerts = (daemon.get("/api/v1/alerts")?.json?.objects("alerts") ?? []).filter { $0.string("rule") == "expect_listening" }
        #expect(expectAlerts.map { $0.string("netns") } == [web], "\(expectAlerts)")
        let hostEvents = daemon.get("/api/v1/events?since=1h&netns=host&port=\(port)")?.json?.objects("events") ?? []
        #expect(hostEvents.contains { $0.string("kind") == "alert_firing" }, "\(hostEvents)")
        #expect(hostEvents.allSatisfy { $0["netns"] == nil }, "\(hostEvents)")
        let dbEvents = daemon.get("/api/v1/events?since=1h&netns=\(db)")?.json?.objects("events") ?? []
        #expect(!dbEvents.contains { $0.string("kind") == "alert_resolved" }, "\(dbEvents)")

        // `portwatch events --netns` reads the same log from the database.
        let cli = runPortwatch(["events", "--netns", web, "--db", daemon.database, "--json"], timeout: 30)
        #expect(cli.status == 0, "\(cli)")
        let cliEvents = cli.json()?.objects("events") ?? []
        #expect(cliEvents.contains { $0.string("kind") == "alert_resolved" } && cliEvents.allSatisfy { $0.string("netns") == web },
                "\(cli)")
        let table = runPortwatch(["events", "--netns", web, "--port", String(port), "--db", daemon.database], timeout: 30)
        #expect(table.status == 0 && table.stdout.contains("alert_resolved  \(web) tcp/\(port)"), "\(table)")
        let bad = runPortwatch(["events", "--netns", "a/b", "--db", daemon.database], timeout: 30)
        #expect(bad.status == 2 && bad.stderr.hasPrefix("portwatch: ") && bad.stderr.split(separator: "\n").count == 1, "\(bad)")
        #expect(!daemon.run.child.reap(), "the daemon exited: \(daemon.log.text.suffix(2000))")
    }
}

/// The pids of a PORT object's `processes`.
private func pids(_ row: [String: Any]) -> Set<Int32> {
    Set(row.objects("processes").compactMap { $0.int("pid").map(Int32.init) })
}

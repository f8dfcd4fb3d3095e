// The daemon with `namespaces:` across the two things that happen to every daemon and every
// container: a restart of the daemon on the same database (SIGTERM, start again), and a
// namespace deleted and made again under the same name while the daemon runs (a new inode).

import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The pids a history sample's `processes` (`name[pid]` strings) name.
private func ownerPids(_ sample: [String: Any]) -> Set<Int32> {
    Set((sample.strings("processes") ?? []).compactMap { owner in
        guard let open = owner.lastIndex(of: "["), owner.hasSuffix("]") else { return nil }
        return Int32(owner[owner.index(after: open)..<owner.index(before: owner.endIndex)])
    })
}

/// `portwatch history PORT [--netns NS] --json` of the database: the samples (empty when none).
private func storedSamples(_ port: UInt16, netns: String?, database: String) -> [[String: Any]] {
    let r = runPortwatch(["history", "\(port)", "--since", "1h", "--db", database, "--json"] + (netns.map { ["--netns", $0] } ?? []),
                         timeout: 30)
    return r.json()?.objects("history").first?.objects("samples") ?? []
}

/// `portwatch events --json` of the database, oldest first.
private func storedEvents(_ database: String) -> [[String: Any]] {
    runPortwatch(["events", "--since", "1h", "--db", database, "--json"], timeout: 30).json()?.objects("events") ?? []
}

/// The `/metrics` value of `portwatch_port_connections` for tcp/`port`, established, in `netns`
/// (nil: the daemon's own namespace, a series without the label).
private func establishedSeries(_ metrics: String, port: UInt16, netns: String?) -> Double? {
    for line in metrics.split(separator: "\n") where line.hasPrefix("portwatch_port_connections{") {
        guard line.contains("port=\"\(port)\""), line.contains("state=\"established\"") else { continue }
        let mine = netns.map { line.contains("netns=\"\($0)\"") } ?? !line.contains("netns=")
        if mine, let value = line.split(separator: " ").last.flatMap({ Double($0) }) { return value }
    }
    return nil
}

@Suite("namespaces: daemon restarts and namespaces made again", .blocking, .serialized,
       .enabled(if: TestEnv.canCreateNamespaces, "needs root, ip and python3 to build network namespaces"))
struct NamespaceRestartTests {
    /// A daemon watching two namespaces (and its own) with established connections on one port
    /// number is stopped with SIGTERM and started again on the same database: each namespace's
    /// history carries on with its own samples only, every sample written before the stop is still
    /// there, the restart raises no namespace or listener events for what was there before (as for
    /// the daemon's own listeners), each namespace's alert fires again once, like the host's, and
    /// `/metrics` has each namespace's series again.
    @Test func aRestartedDaemonCarriesOnEachNamespacesHistoryWithoutAnEventStorm() throws {
        let dir = try makeTemporaryDirectory("netns-restart")
        defer { removeTree(dir) }
        let k = NamespaceLab.nextSerial()
        let lab = try NamespaceLab(names: ["pwr-\(getpid())-\(k)a", "pwr-\(getpid())-\(k)b"])
        defer { lab.destroy() }
        let (a, b) = (lab.names[0], lab.names[1])
        let port = try Net.freePorts(1)[0]
        // Established counts differ per namespace, so a sample filed under the wrong one shows.
        let host = try lab.startHolder(port: port, connections: 1, in: .host)
        let inA = try lab.startHolder(port: port, connections: 2, in: .named(a))
        let inB = try lab.startHolder(port: port, connections: 3, in: .named(b))
        let spaces: [(label: String?, pid: Int32, established: Int)] = [(nil, host.pid, 1), (a, inA.pid, 2), (b, inB.pid, 3)]

        let config = dir + "/portwatch.yml"
        try """
            interval: 200ms
            namespaces: [\(a), \(b)]
            rules:
              - {name: pw-restart-busy, ports: "\(port)", metric: connections.established, above: 0, for: 0s}
            """.write(toFile: config, atomically: true, encoding: .utf8)

        /// Waits until every namespace's alert fires and each has `samples` stored samples.
        func settle(_ daemon: LiveDaemon, samples: Int) -> Bool {
            daemon.within(samples: 60) { () -> Bool? in
                let alerts = daemon.get("/api/v1/alerts")?.json?.objects("alerts") ?? []
                let firing = Set(alerts.filter { $0.string("state") == "firing" && $0.int("port") == Int(port) }.map { $0.string("netns") ?? "host" })
                guard firing == Set(spaces.map { $0.label ?? "host" }) else { return nil }
                for s in spaces {
                    let q = s.label.map { "&netns=\($0)" } ?? ""
                    guard (daemon.get("/api/v1/ports/tcp/\(port)/history?since=1h\(q)")?.json?.objects("samples").count ?? 0) >= samples
                    else { return nil }
                }
                return true
            } == true
        }

        let first = try LiveDaemon(["--config", config], directory: dir)
        defer { first.stop() }
        try #require(settle(first, samples: 3), "first run never settled: \(first.log.text.suffix(3000))")
        let metrics1 = first.get("/metrics")?.body ?? ""
        for s in spaces {
            #expect(establishedSeries(metrics1, port: port, netns: s.label) == Double(s.established), "\(s.label ?? "host")")
        }
        first.stop()
        #expect(exitCode(first.run.child.exitStatus) == 0, "SIGTERM is a clean stop: \(first.log.text.suffix(2000))")
        _ = first.log.waitFor(timeout: 10) { _ in false }
        let samplesTaken = first.log.lines.filter(DaemonCLITests.isSampleLine).count
        let before = spaces.map { storedSamples(port, netns: $0.label, database: first.database) }
        let eventsBefore = storedEvents(first.database)
        for (s, stored) in zip(spaces, before) {
            // Every sample the first run took is stored, but for the one being written at the stop.
            #expect(stored.count >= samplesTaken - 1 && stored.count <= samplesTaken,
                    "\(s.label ?? "host"): \(stored.count) stored of \(samplesTaken) samples")
        }

        // While the daemon is down a port starts listening for the first time in a, and another on
        // the host: news after the restart in both alike (`new_listener`), no `listener_started`.
        let downtime = try Net.freePorts(2)
        _ = try lab.startServer(["tcp:127.0.0.1:\(downtime[0])"], in: a)
        let hostNew = try PythonServer.start(["tcp:127.0.0.1:\(downtime[1])"])
        defer { hostNew.stop() }

        // The same namespaces, listed the other way round: a sample is filed by its namespace's
        // label, never by its place in the list.
        try String(contentsOfFile: config, encoding: .utf8)
            .replacingOccurrences(of: "namespaces: [\(a), \(b)]", with: "namespaces: [\(b), \(a)]")
            .write(toFile: config, atomically: true, encoding: .utf8)
        let second = try LiveDaemon(["--config", config], directory: dir)
        defer { second.stop() }
        let grown = before.map(\.count).max() ?? 0
        try #require(settle(second, samples: grown + 3), "second run never settled: \(second.log.text.suffix(3000))")
        let metrics2 = second.get("/metrics")?.body ?? ""
        for s in spaces {
            #expect(establishedSeries(metrics2, port: port, netns: s.label) == Double(s.established), "\(s.label ?? "host")")
        }
        second.stop()
        #expect(exitCode(second.run.child.exitStatus) == 0)

        for (s, stored) in zip(spaces, before) {
            let after = storedSamples(port, netns: s.label, database: second.database)
            let name = s.label ?? "host"
            // Nothing of the first run moved or went: its samples are all still here, as they were.
            let times = Set(after.compactMap { $0["time"] as? Double })
            #expect(Set(stored.compactMap { $0["time"] as? Double }).isSubset(of: times), "\(name)")
            #expect(after.count >= stored.count + 3, "\(name): \(stored.count) then \(after.count)")
            // Every sample is this namespace's: its own holder, its own count.
            #expect(after.allSatisfy { ownerPids($0) == [s.pid] }, "\(name): \(after.map(ownerPids))")
            #expect(after.allSatisfy { $0.object("connections")?.int("established") == s.established }, "\(name)")
        }

        let fresh = Array(storedEvents(second.database).dropFirst(eventsBefore.count))
        let kinds = fresh.map { "\($0.string("kind") ?? "?") \($0.string("netns") ?? "host") \($0.int("port") ?? 0)" }
        #expect(!fresh.contains { ["namespace_added", "namespace_removed"].contains($0.string("kind")) }, "\(kinds)")
        #expect(!fresh.contains { ["listener_started", "listener_stopped", "new_listener", "owner_changed"].contains($0.string("kind"))
                                  && $0.int("port") == Int(port) }, "\(kinds)")
        for (label, p) in [(a as String?, downtime[0]), (nil, downtime[1])] {
            let news = fresh.filter { $0.int("port") == Int(p) && $0.string("netns") == label }.map { $0.string("kind") ?? "?" }
            #expect(news == ["new_listener"], "\(label ?? "host") tcp/\(p): \(news)")
        }
        // Alert states are not kept over a restart: a condition still true fires again, once, in
        // every namespace alike; nothing resolves.
        for s in spaces {
            let mine = fresh.filter { $0.int("port") == Int(port) && $0.string("netns") == s.label }
            #expect(mine.filter { $0.string("kind") == "alert_firing" }.count == 1, "\(s.label ?? "host"): \(kinds)")
            #expect(!mine.contains { $0.string("kind") == "alert_resolved" }, "\(s.label ?? "host"): \(kinds)")
        }
    }

    /// A namespace deleted and made again under the same name between two samples (a new inode;
    /// the old one's holder is gone) is a new namespace: `namespace_removed` (old inode) before
    /// `namespace_added` (new inode), the old listener stops and the new one starts even on the
    /// same port, the old namespace's alert resolves and the new one's fires; rows, history and
    /// `/metrics` show the new holder only from then on.
    @Test func aNamespaceMadeAgainUnderItsNameIsANewNamespace() throws {
        guard TestEnv.which("unshare") != nil else { return }
        let dir = try makeTemporaryDirectory("netns-remade")
        defer { removeTree(dir) }
        let lab = try NamespaceLab(names: ["pwm-\(getpid())-\(NamespaceLab.nextSerial())"])
        defer { lab.destroy() }
        let name = lab.names[0]
        let oldInode = lab.namespaces[0].inode
        let port = try Net.freePorts(1)[0]
        let old = try lab.startHolder(port: port, connections: 1, in: .named(name))

        let config = dir + "/portwatch.yml"
        // A long interval: the swap below (two `ip` calls) falls between two samples.
        try """
            interval: 1s
            namespaces: [\(name)]
            rules:
              - {name: pw-remade-busy, ports: "\(port)", metric: connections.established, above: 0, for: 0s}
            """.write(toFile: config, atomically: true, encoding: .utf8)
        let daemon = try LiveDaemon(["--config", config], directory: dir)
        defer { daemon.stop() }
        let firing = daemon.within(samples: 20) { () -> Bool? in
            (daemon.get("/api/v1/alerts?netns=\(name)")?.json?.objects("alerts") ?? []).contains { $0.string("state") == "firing" } ? true : nil
        }
        try #require(firing == true, "\(daemon.log.text.suffix(3000))")

        // The new namespace is made (unnamed) with its listener ready, then takes the name.
        let new = try lab.startHolder(port: port, connections: 2, in: .unnamed)
        try #require(new.inode != oldInode)
        old.child.kill()
        let ip = try #require(TestEnv.ip)
        let deleted = runTool(ip, ["netns", "delete", name])
        let attached = runTool(ip, ["netns", "attach", name, "\(new.pid)"])
        try #require(deleted.status == 0 && attached.status == 0, "\(deleted) \(attached)")

        let row = daemon.within(samples: 20) { () -> [String: Any]? in
            daemon.get("/api/v1/ports/tcp/\(port)?netns=\(name)")?.json.flatMap { $0.namespaceInode == new.inode ? $0 : nil }
        }
        let current = try #require(row, "\(daemon.log.text.suffix(3000))")
        #expect(current.pids() == [new.pid], "\(current)")
        #expect(current.object("connections")?.int("established") == 2)

        let wanted = ["namespace_removed", "namespace_added", "listener_stopped", "listener_started", "alert_resolved", "alert_firing"]
        let events = daemon.within(samples: 20) { () -> [[String: Any]]? in
            let all = (daemon.get("/api/v1/events?since=1h&netns=\(name)")?.json?.objects("events") ?? [])
                .filter { ["namespace_removed", "namespace_added"].contains($0.string("kind")) || $0.int("port") == Int(port) }
            let seen = all.map { $0.string("kind") ?? "" }
            return wanted.allSatisfy(seen.contains) ? all : nil
        }
        let got = try #require(events, "\(daemon.get("/api/v1/events?since=1h")?.body.suffix(3000) ?? "")")
        let kinds = got.map { $0.string("kind") ?? "?" }
        // One of each after the old namespace's first alert_firing, each pair in the order it happened.
        let after = Array(kinds.drop { $0 == "alert_firing" })
        #expect(after.sorted() == wanted.sorted(), "\(kinds)")
        for (earlier, later) in [("namespace_removed", "namespace_added"), ("listener_stopped", "listener_started"),
                                 ("alert_resolved", "alert_firing")] {
            #expect((after.firstIndex(of: earlier) ?? .max) < (after.firstIndex(of: later) ?? .min), "\(kinds)")
        }
        #expect(got.first { $0.string("kind") == "namespace_removed" }.map { "\($0["netns_inode"] ?? "")" } == "\(oldInode)")
        #expect(got.first { $0.string("kind") == "namespace_added" }.map { "\($0["netns_inode"] ?? "")" } == "\(new.inode)")
        #expect(got.first { $0.string("kind") == "listener_started" }?.string("message")?.contains("[\(new.pid)]") == true, "\(got)")

        // History: one series under the name, each sample held by the old holder or the new, never both.
        let stored = daemon.within(samples: 20) { () -> [[String: Any]]? in
            let samples = daemon.get("/api/v1/ports/tcp/\(port)/history?since=1h&netns=\(name)")?.json?.objects("samples") ?? []
            return samples.contains { ownerPids($0) == [new.pid] } ? samples : nil
        }
        let samples = try #require(stored)
        let owners = samples.map(ownerPids)
        #expect(owners.allSatisfy { $0 == [old.pid] || $0 == [new.pid] }, "\(owners)")
        let firstNew = try #require(owners.firstIndex(of: [new.pid]))
        #expect(owners[firstNew...].allSatisfy { $0 == [new.pid] }, "\(owners)")
        let metrics = daemon.get("/metrics")?.body ?? ""
        #expect(establishedSeries(metrics, port: port, netns: name) == 2, "\(metrics.split(separator: "\n").filter { $0.contains(name) })")
    }
}

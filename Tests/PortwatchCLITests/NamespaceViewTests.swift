// Every namespace in every view (issue 9): three named network namespaces and one unnamed one
// (`unshare -n`), each with a python3 holder listening on the same port 8080 with its own
// number of established loopback connections. Each namespace is private to the test, so the
// fixed port cannot collide with anything; names carry our pid. Everything is deleted by
// `defer`, also when an expectation fails.

import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// One namespace of the fleet: its name (nil when unnamed), the holder in it and its load.
struct FleetMember {
    var name: String?
    var holder: ConnectionHolder
    var connections: Int
    var bytesPerConnection: Int
    var pid: Int32 { holder.pid }
    var inode: UInt64 { holder.inode }
}

/// Three named namespaces and one unnamed, each with a holder on port 8080: namespace i holds
/// i connections of 1000i+7 bytes and closes one; the unnamed one 4 of 5003 and closes two.
final class NamespaceFleet: NamespaceLab, @unchecked Sendable {
    // @unchecked: `members` is written only by `init`; the lab locks its own state.
    static let port: UInt16 = 8080
    private(set) var members: [FleetMember] = []

    /// Builds the fleet; a failure midway deletes what was made (`deinit`).
    init() throws {
        let k = NamespaceLab.nextSerial()
        try super.init(names: (1...3).map { "pwv-\(getpid())-\(k)-ns\($0)" })
        for (i, name) in zip(1..., names) {
            let holder = try startHolder(port: Self.port, connections: i, bytes: 1000 * i + 7, closing: 1, in: .named(name))
            members.append(FleetMember(name: name, holder: holder, connections: i, bytesPerConnection: 1000 * i + 7))
        }
        let holder = try startHolder(port: Self.port, connections: 4, bytes: 5003, closing: 2, in: .unnamed)
        members.append(FleetMember(name: nil, holder: holder, connections: 4, bytesPerConnection: 5003))
    }

    /// Tells every holder to send its bytes and close its connections; waits until all are done.
    func trafficAndClose() throws {
        try ConnectionHolder.trafficAndClose(members.map(\.holder))
    }

    var named: [FleetMember] { members.filter { $0.name != nil } }
    var unnamed: FleetMember { members.first { $0.name == nil }! }
}

/// Runs `body` with a fresh fleet, always destroyed afterwards.
private func withFleet(_ body: (NamespaceFleet) throws -> Void) throws {
    let fleet = try NamespaceFleet()
    defer { fleet.destroy() }
    try body(fleet)
}

extension Dictionary where Key == String, Value == Any {
    /// The `namespace` object's inode.
    var namespaceInode: UInt64? { (object("namespace")?["inode"] as? NSNumber)?.uint64Value }
}

@Suite("namespaces: every namespace in every view", .blocking,
       .enabled(if: TestEnv.canCreateNamespaces && TestEnv.which("unshare") != nil,
                "needs root with CAP_SYS_ADMIN, ip, unshare and python3 to build network namespaces"))
struct NamespaceViewTests {
    @Test func allNamespacesTagsEachRowWithItsNamespaceAndProcess() throws {
        try withFleet { fleet in
            let r = runPortwatch(["ports", "8080", "--all-namespaces", "--json"])
            #expect(r.status == 0, "\(r)")
            let rows = r.json()?.objects("ports").filter { $0.int("port") == 8080 && $0.bool("listening") == true } ?? []
            for m in fleet.members {
                let mine = rows.filter { $0.namespaceInode == m.inode }
                try #require(mine.count == 1, "one 8080 row in \(m.name ?? "unnamed"): \(r)")
                let row = mine[0]
                #expect(row.pids().contains(m.pid))
                // Another namespace's holder never shows on this namespace's row.
                #expect(Set(row.pids()).isDisjoint(with: fleet.members.filter { $0.pid != m.pid }.map(\.pid)))
                #expect(row.object("connections")?.int("established") == m.connections)
                let ns = try #require(row.object("namespace"))
                if let name = m.name {
                    #expect(ns.string("name") == name)
                } else {
                    #expect(ns["name"] is NSNull)
                    #expect(ns.string("label") == "pid:\(m.pid)")
                }
            }
            // The table names each namespace in a NAMESPACE column.
            let table = runPortwatch(["ports", "8080", "--all-namespaces"])
            #expect(table.status == 0, "\(table)")
            #expect(table.stdout.hasPrefix("NAMESPACE"))
            for m in fleet.named { #expect(table.stdout.contains(m.name!)) }
            #expect(table.stdout.contains("pid:\(fleet.unnamed.pid)"))
        }
    }

    @Test func checkWithNetnsSeesThatNamespacesListenerOnly() throws {
        try withFleet { fleet in
            let (ns1, ns2) = (fleet.named[0], fleet.named[1])
            let r = runPortwatch(["check", "8080", "--netns", ns2.name!, "--expect", "listening", "--json"])
            #expect(r.status == 0, "\(r)")
            let doc = try #require(r.json())
            // ns2's holder has two established connections: busy, which meets `listening`.
            #expect(doc.string("verdict") == "busy")
            #expect(doc.bool("matched") == true)
            #expect(doc.pids() == [ns2.pid])
            #expect(!doc.pids().contains(ns1.pid))
            #expect(doc.object("namespace")?.string("name") == ns2.name)
            #expect(doc.namespaceInode == ns2.inode)
            // The unnamed namespace through its process, and through the namespace file.
            for spec in ["pid:\(fleet.unnamed.pid)", "/proc/\(fleet.unnamed.pid)/ns/net"] {
                let u = runPortwatch(["check", "8080", "--netns", spec, "--expect", "listening", "--json"])
                #expect(u.status == 0, "\(u)")
                #expect(u.json()?.pids() == [fleet.unnamed.pid])
            }
            // A port nobody holds in ns2 is free there.
            let free = runPortwatch(["check", "8081", "--netns", ns2.name!])
            #expect(free.status == 0, "\(free)")
        }
    }

    @Test func whoNamesTheHolderInEveryNamespace() throws {
        try withFleet { fleet in
            let r = runPortwatch(["who", "8080", "--all-namespaces", "--json"])
            #expect(r.status == 0, "\(r)")
            let results = r.json()?.objects("results") ?? []
            for m in fleet.members {
                let entry = try #require(results.first { $0.namespaceInode == m.inode }, "no who entry for \(m.name ?? "unnamed")")
                #expect(entry.pids() == [m.pid])
                #expect(entry.int("port") == 8080)
            }
            let table = runPortwatch(["who", "8080", "--all-namespaces"])
            #expect(table.status == 0, "\(table)")
            for m in fleet.members { #expect(table.stdout.contains(String(m.pid))) }
        }
    }

    @Test func topCountsTrafficPerNamespaceExactly() throws {
        try withFleet { fleet in
            let run = try startPortwatchWhenReady(["top", "8080", "--json", "--all-namespaces", "--iterations", "2",
                                                   "--interval", "2s"])
            try fleet.trafficAndClose()
            let r = run.finish(timeout: 30)
            #expect(r.status == 0, "\(r)")
            var received: [UInt64: Int] = [:]
            var opened: [UInt64: Int] = [:]
            for line in r.stdout.split(separator: "\n") {
                let doc = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
                for row in doc.objects("ports") where row.int("port") == 8080 && row.string("role") == "local" {
                    guard let inode = row.namespaceInode else { continue }
                    received[inode, default: 0] += row.object("window")?.object("bytes")?.int("received") ?? 0
                    opened[inode, default: 0] += 1
                }
            }
            for m in fleet.members {
                // Connections closed inside the window count too (destroy events of that namespace).
                #expect(received[m.inode] == m.connections * m.bytesPerConnection,
                        "\(m.name ?? "unnamed"): \(received[m.inode] ?? -1) bytes; \(r)")
            }
        }
    }
}

@Suite("namespaces: bad --netns values", .blocking)
struct NamespaceInputTests {
    @Test func unknownNamespaceIsExitTwoWithOneLine() {
        for args in [["ports", "--netns", "nosuch-\(getpid())"], ["check", "8080", "--netns", "nosuch-\(getpid())"],
                     ["who", "8080", "--netns", "pid:999999999"], ["ports", "--netns", "/etc/hostname"],
                     ["top", "--netns", "x", "--all-namespaces", "--iterations", "1"], ["ports", "--netns", "pid:abc"],
                     // A remote check is made from portwatch's own namespace: no --netns with --host.
                     ["check", "8080", "--netns", "x", "--host", "::1"],
                     ["check", "8080", "--all-namespaces", "--host", "127.0.0.1"]] {
            let r = runPortwatch(args)
            #expect(r.status == 2, "\(args): \(r)")
            #expect(r.stderrLines.count == 1 && r.stderr.hasPrefix("portwatch: "), "\(args): \(r)")
            #expect(r.stdout.isEmpty)
        }
    }
}

@Suite("namespaces: containers by cgroup", .blocking,
       .enabled(if: TestEnv.canCreateNamespaces && FakeContainerCgroup.root != nil,
                "needs root, ip, python3 and a writable cgroup hierarchy"))
struct NamespaceContainerTests {
    /// A process moved into a cgroup named as docker names its containers
    /// (`docker-ID.scope`) is reported as that container, on the row and on its process.
    @Test func processInADockerCgroupIsNamedAsItsContainer() throws {
        let id = String(repeating: "c0ffee", count: 11).prefix(63) + "\(getpid() % 10)"
        let cgroup = try FakeContainerCgroup(slice: "pwtest", id: String(id))
        let lab = try NetnsLab()
        defer { lab.destroy() }
        let server = try lab.startServer(["tcp:127.0.0.1:8080"], in: lab.server)
        let pid = server.pid
        try cgroup.adopt(pid)
        // Back to the root before the server goes, so the fake cgroup can go too.
        defer { cgroup.remove() }
        let r = runPortwatch(["ports", "8080", "--netns", lab.server, "--json"])
        #expect(r.status == 0, "\(r)")
        let row = try #require(r.json()?.objects("ports").first { $0.int("port") == 8080 })
        #expect(row.object("container")?.string("id") == String(id))
        #expect(row.object("container")?.string("runtime") == "docker")
        #expect(row.objects("processes").first?.string("container") == String(id))
        let who = runPortwatch(["who", "8080", "--netns", lab.server])
        #expect(who.stdout.contains("docker " + String(id.prefix(12))), "\(who)")
    }
}

@Suite("namespaces: the daemon", .blocking, .serialized,
       .enabled(if: TestEnv.canCreateNamespaces, "needs root, ip and python3 to build network namespaces"))
struct NamespaceDaemonTests {
    /// With `namespaces: [a, b]`, rows of both namespaces are watched; deleting one while the
    /// daemon runs is a `namespace_removed` event, adding it back a `namespace_added`, and the
    /// daemon goes on serving.
    @Test func aNamespaceDeletedWhileTheDaemonRunsIsAnEvent() throws {
        guard let ip = TestEnv.ip else { return }
        let dir = try makeTemporaryDirectory("netns-daemon")
        defer { removeTree(dir) }
        let lab = try NamespaceLab(names: ["pwd-\(getpid())-a", "pwd-\(getpid())-b"])
        defer { lab.destroy() }
        let (a, b) = (lab.names[0], lab.names[1])
        _ = try lab.startServer(["tcp:127.0.0.1:8080"], in: a)
        let config = dir + "/portwatch.yml"
        try "interval: 200ms\nnamespaces: [\(a), \(b)]\n".write(toFile: config, atomically: true, encoding: .utf8)
        let daemon = try LiveDaemon(["--config", config], directory: dir)
        defer { daemon.stop() }

        // The listener inside `a` is a metric series with its namespace.
        let metric = daemon.within(samples: 20) { () -> String? in
            guard let text = daemon.get("/metrics")?.body else { return nil }
            return text.split(separator: "\n").first {
                $0.hasPrefix("portwatch_port_listening{") && $0.contains("netns=\"\(a)\"") && $0.contains("port=\"8080\"")
            }.map(String.init)
        }
        #expect(metric != nil, "no netns series: \(daemon.log.text.suffix(2000))")

        _ = runTool(ip, ["netns", "delete", b])
        let removed = daemon.within(samples: 30) { () -> [String: Any]? in
            (daemon.get("/api/v1/events?since=1h")?.json?.objects("events") ?? [])
                .first { $0.string("kind") == "namespace_removed" && $0.string("netns") == b }
        }
        #expect(removed != nil, "no namespace_removed event: \(daemon.log.text.suffix(2000))")

        try #require(runTool(ip, ["netns", "add", b]).status == 0)
        let added = daemon.within(samples: 30) { () -> [String: Any]? in
            (daemon.get("/api/v1/events?since=1h")?.json?.objects("events") ?? [])
                .first { $0.string("kind") == "namespace_added" && $0.string("netns") == b }
        }
        #expect(added != nil, "no namespace_added event: \(daemon.log.text.suffix(2000))")
        #expect(daemon.get("/healthz")?.status == 200)
        #expect(!daemon.run.child.reap(), "the daemon exited: \(daemon.log.text.suffix(2000))")
    }
}

@Suite("namespaces: without privileges", .blocking,
       .enabled(if: TestEnv.canCreateNamespaces && TestEnv.which("setpriv") != nil,
                "needs root (to make the namespace, then drop privileges), ip and setpriv"))
struct NamespacePrivilegeTests {
    /// As nobody, `--all-namespaces` answers for what it can read and names each namespace it
    /// could not enter; `--netns` of such a namespace is exit 2 with one line.
    @Test func unprivilegedRunsSayWhichNamespacesCouldNotBeEntered() throws {
        guard let setpriv = TestEnv.which("setpriv") else { return }
        let lab = try NamespaceLab(names: ["pwn-\(getpid())-priv"])
        defer { lab.destroy() }
        let name = lab.names[0]
        let drop = ["--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all",
                    TestEnv.portwatchPath]
        let all = runTool(setpriv, drop + ["ports", "--all-namespaces"], timeout: 30)
        #expect(all.status == 0 || all.status == 1, "\(all)")
        #expect(all.stderr.contains("network namespace \(name) could not be entered — needs root or CAP_SYS_ADMIN"), "\(all)")
        let one = runTool(setpriv, drop + ["ports", "--netns", name], timeout: 30)
        #expect(one.status == 2, "\(one)")
        #expect(one.stderr.hasPrefix("portwatch: ") && one.stderr.split(separator: "\n").count == 1, "\(one)")
        #expect(one.stderr.contains(name))
    }
}

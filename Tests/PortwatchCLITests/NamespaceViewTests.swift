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

/// A listener on PORT with CONNS loopback connections to it; on "go" each client sends PER
/// bytes, the servers read them all, CLOSE connections are aborted (both ends), and "done" is
/// printed. With a path to `ip` as the last argument, it first brings `lo` up (unshare -n).
private let holderScript = #"""
import os, socket, struct, sys
port, conns, per, close_n = (int(a) for a in sys.argv[1:5])
if len(sys.argv) > 5:
    os.system(sys.argv[5] + " link set lo up")
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", port))
srv.listen(64)
clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(conns)]
accepted = {}
for _ in range(conns):
    s, peer = srv.accept()
    accepted[peer[1]] = s
pairs = [(c, accepted[c.getsockname()[1]]) for c in clients]
print(os.getpid(), flush=True)
for line in sys.stdin:
    if line.startswith("go"):
        for c, _ in pairs:
            c.sendall(b"x" * per)
        for _, s in pairs:
            got = 0
            while got < per:
                got += len(s.recv(65536))
        for c, s in pairs[:close_n]:
            # An abort (RST): a FIN would add its one byte to the server's bytes_received.
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            c.close()
            s.close()
        print("done", flush=True)
"""#

/// One namespace of the fleet: its name (nil when unnamed), the holder in it and its load.
struct FleetMember {
    var name: String?
    var holder: Child
    var pid: Int32
    var inode: UInt64
    var connections: Int
    var bytesPerConnection: Int
    var closed: Int
}

/// Three named namespaces and one unnamed, each with a holder on port 8080.
final class NamespaceFleet: @unchecked Sendable {
    static let port: UInt16 = 8080
    private static let counter = Counter()
    private(set) var members: [FleetMember] = []
    private var names: [String] = []

    init() throws {
        guard let ip = TestEnv.ip, let python = TestEnv.python3 else { throw SupportError("ip or python3 missing") }
        guard let unshare = TestEnv.which("unshare") else { throw SupportError("unshare missing") }
        let k = NamespaceFleet.counter.next()
        do {
            for i in 1...3 {
                let name = "pwv-\(getpid())-\(k)-ns\(i)"
                let created = runTool(ip, ["netns", "add", name])
                if created.status != 0 { throw SupportError("ip netns add \(name): \(created.stderr)") }
                names.append(name)
                _ = runTool(ip, ["-n", name, "link", "set", "lo", "up"])
                let child = try Child.spawn(ip, ["netns", "exec", name, python, "-u", "-c", holderScript,
                                                 String(Self.port), String(i), String(1000 * i + 7), "1"], stdin: .pipe)
                try add(child, name: name, connections: i, bytes: 1000 * i + 7, closed: 1)
            }
            let child = try Child.spawn(unshare, ["-n", python, "-u", "-c", holderScript,
                                                  String(Self.port), "4", "5003", "2", ip], stdin: .pipe)
            try add(child, name: nil, connections: 4, bytes: 5003, closed: 2)
        } catch {
            destroy()
            throw error
        }
    }

    private func add(_ child: Child, name: String?, connections: Int, bytes: Int, closed: Int) throws {
        guard let line = child.readLine(timeout: 20), let pid = Int32(line) else {
            let err = child.drainStderr()
            child.kill()
            throw SupportError("holder in \(name ?? "unshare -n") did not start: \(err)")
        }
        var st = stat()
        guard stat("/proc/\(pid)/ns/net", &st) == 0 else { throw SupportError("no /proc/\(pid)/ns/net") }
        members.append(FleetMember(name: name, holder: child, pid: pid, inode: UInt64(st.st_ino),
                                   connections: connections, bytesPerConnection: bytes, closed: closed))
    }

    /// Tells every holder to send its bytes and close its connections; waits until all are done.
    func trafficAndClose() throws {
        for m in members {
            let go = "go\n"
            guard go.withCString({ write(m.holder.stdinFD, $0, 3) }) == 3 else { throw SupportError("holder stdin closed") }
        }
        for m in members {
            guard m.holder.readLine(timeout: 20) == "done" else { throw SupportError("holder \(m.pid) did not finish") }
        }
    }

    var named: [FleetMember] { members.filter { $0.name != nil } }
    var unnamed: FleetMember { members.first { $0.name == nil }! }

    /// Kills the holders and deletes the namespaces. Idempotent.
    func destroy() {
        for m in members { m.holder.kill() }
        members = []
        if let ip = TestEnv.ip {
            for name in names where access("/run/netns/\(name)", F_OK) == 0 { _ = runTool(ip, ["netns", "delete", name]) }
        }
        names = []
    }

    deinit { destroy() }
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
                     ["top", "--netns", "x", "--all-namespaces", "--iterations", "1"], ["ports", "--netns", "pid:abc"]] {
            let r = runPortwatch(args)
            #expect(r.status == 2, "\(args): \(r)")
            #expect(r.stderrLines.count == 1 && r.stderr.hasPrefix("portwatch: "), "\(args): \(r)")
            #expect(r.stdout.isEmpty)
        }
    }
}

/// A cgroup hierarchy this test may create a fake container cgroup in: systemd's named v1
/// hierarchy or the v2 one (whichever the host mounts writable).
private let writableCgroupRoot: String? = {
    guard geteuid() == 0 else { return nil }
    for root in ["/sys/fs/cgroup/systemd", "/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
    where access(root + "/cgroup.procs", W_OK) == 0 {
        return root
    }
    return nil
}()

@Suite("namespaces: containers by cgroup", .blocking,
       .enabled(if: TestEnv.canCreateNamespaces && writableCgroupRoot != nil,
                "needs root, ip, python3 and a writable cgroup hierarchy"))
struct NamespaceContainerTests {
    /// A process moved into a cgroup named as docker names its containers
    /// (`docker-ID.scope`) is reported as that container, on the row and on its process.
    @Test func processInADockerCgroupIsNamedAsItsContainer() throws {
        let root = try #require(writableCgroupRoot)
        let id = String(repeating: "c0ffee", count: 11).prefix(63) + "\(getpid() % 10)"
        let parent = "\(root)/pwtest-\(getpid()).slice"
        let scope = "\(parent)/docker-\(id).scope"
        guard mkdir(parent, 0o755) == 0 || errno == EEXIST, mkdir(scope, 0o755) == 0 || errno == EEXIST else {
            throw SupportError("cannot create \(scope): \(String(cString: strerror(errno)))")
        }
        defer {
            rmdir(scope)
            rmdir(parent)
        }
        let lab = try NetnsLab()
        defer { lab.destroy() }
        let server = try lab.startServer(["tcp:127.0.0.1:8080"], in: lab.server)
        let pid = server.pid
        let written = "\(pid)\n".withCString { text in
            let fd = open(scope + "/cgroup.procs", O_WRONLY)
            defer { if fd >= 0 { close(fd) } }
            return fd >= 0 && write(fd, text, strlen(text)) == strlen(text)
        }
        try #require(written, "cannot move \(pid) into \(scope)")
        defer {
            // Back to the root so the fake cgroup can go even if the server outlives the test.
            let fd = open(root + "/cgroup.procs", O_WRONLY)
            if fd >= 0 { _ = "\(pid)\n".withCString { write(fd, $0, strlen($0)) }; close(fd) }
        }
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
        let (a, b) = ("pwd-\(getpid())-a", "pwd-\(getpid())-b")
        defer { for ns in [a, b] { _ = runTool(ip, ["netns", "delete", ns]) } }
        for ns in [a, b] {
            try #require(runTool(ip, ["netns", "add", ns]).status == 0)
            _ = runTool(ip, ["-n", ns, "link", "set", "lo", "up"])
        }
        let server = try PythonServer.start(["tcp:127.0.0.1:8080"], netns: a)
        defer { server.stop() }
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
        guard let ip = TestEnv.ip, let setpriv = TestEnv.which("setpriv") else { return }
        let name = "pwn-\(getpid())-priv"
        try #require(runTool(ip, ["netns", "add", name]).status == 0)
        defer { _ = runTool(ip, ["netns", "delete", name]) }
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

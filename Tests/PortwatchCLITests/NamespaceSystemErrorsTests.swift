// Each namespace's own system counters (issue 9): /proc/net/snmp and /proc/net/netstat are per
// network namespace, so a view over several shows each namespace's deltas under that namespace
// (`system_errors_by_namespace`, the tables' system lines), never one namespace's for all. Two
// named namespaces of the test's own (names carry our pid) each make a known, different change
// of their counters; each must show exactly its own, and the other none of it.

import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Makes COUNT connects to 127.0.0.1:PORT, where nothing listens (each SYN answered by a RST:
/// one `attempt_fails` and one `out_rsts` in the namespace), then COUNT2 UDP datagrams to the
/// same port (each one `udp_no_ports`).
private let refusalScript = #"""
import socket, sys
port, connects, datagrams = (int(a) for a in sys.argv[1:4])
for _ in range(connects):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
        sys.exit("something listens on %d" % port)
    except ConnectionRefusedError:
        pass
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(datagrams):
    s.sendto(b"?", ("127.0.0.1", port))
s.close()
"""#

/// Listens on 127.0.0.1:PORT with a backlog of 0 (one connection fills the accept queue) and
/// never accepts; prints "ready", and on each "flood" line makes 8 non-blocking connects (the
/// SYNs after the first overflow the queue: listen drops of the namespace, and again at each SYN
/// retry), keeps them open and prints "done".
private let overflowScript = #"""
import socket, sys
port = int(sys.argv[1])
lst = socket.socket()
lst.bind(("127.0.0.1", port))
lst.listen(0)
print("ready", flush=True)
held = []
for line in sys.stdin:
    if not line.startswith("flood"):
        continue
    for _ in range(8):
        c = socket.socket()
        c.setblocking(False)
        try:
            c.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        held.append(c)
    print("done", flush=True)
"""#

/// Two fresh named namespaces (only loopback, up) that nothing else touches.
final class CounterLab: NamespaceLab, @unchecked Sendable {
    // @unchecked: its own property is a constant; the lab locks its state.
    /// Nothing listens there in a fresh namespace.
    let closedPort = 9
    var members: [LabNamespace] { namespaces }

    init() throws {
        let k = NamespaceLab.nextSerial()
        try super.init(names: ["pwse-\(getpid())-\(k)a", "pwse-\(getpid())-\(k)b"])
    }

    /// Inside `member`: `connects` refused TCP connects and `datagrams` UDP datagrams to the
    /// closed port; returns when all are sent.
    func refuse(in member: LabNamespace, connects: Int, datagrams: Int) throws {
        guard let python = TestEnv.python3 else { throw SupportError("python3 missing") }
        let r = exec(member.name, [python, "-c", refusalScript, String(closedPort), String(connects), String(datagrams)],
                     timeout: 30)
        if r.status != 0 { throw SupportError("refusals in \(member.name) failed (\(r.status)): \(r.stderr)") }
    }

    /// Starts `overflowScript` inside `member` on `port`; killed by `destroy` (or the caller).
    func overflowingListener(in member: LabNamespace, port: Int) throws -> Child {
        let (child, line) = try startPython(overflowScript, [String(port)], in: .named(member.name))
        guard line == "ready" else { throw SupportError("listener in \(member.name) said '\(line)'") }
        return child
    }

    /// Has `listener` overflow its accept queue; returns when the connects are made.
    func flood(_ listener: Child) throws {
        try tell([listener], "flood", awaiting: "done", timeout: 20)
    }
}

/// The counters the lab moves, as one namespace's entries summed.
struct RefusalCounts: Hashable, CustomStringConvertible {
    var attemptFails = 0
    var outRsts = 0
    var udpNoPorts = 0

    /// Adds one `system_errors` object.
    mutating func add(_ errors: [String: Any]?) {
        attemptFails += errors?.int("attempt_fails") ?? 0
        outRsts += errors?.int("out_rsts") ?? 0
        udpNoPorts += errors?.int("udp_no_ports") ?? 0
    }

    var description: String { "attempt_fails \(attemptFails), out_rsts \(outRsts), udp_no_ports \(udpNoPorts)" }
}

extension Dictionary where Key == String, Value == Any {
    /// The `system_errors_by_namespace` entry of the namespace `inode`.
    func systemErrors(ofNamespace inode: UInt64) -> [String: Any]? {
        objects("system_errors_by_namespace").first { $0.namespaceInode == inode }?.object("system_errors")
    }

    /// The `system_errors_by_namespace` entry of portwatch's own namespace.
    var ownSystemErrors: [String: Any]? {
        objects("system_errors_by_namespace").first { $0.object("namespace")?.bool("own") == true }?.object("system_errors")
    }
}

@Suite("namespaces: each namespace's own system counters", .blocking, .serialized,
       .enabled(if: TestEnv.isRoot && TestEnv.canCreateNamespaces,
                "needs root (CAP_SYS_ADMIN to make and enter namespaces), ip and python3"))
struct NamespaceSystemErrorsTests {
    /// `top --json --all-namespaces`: refused connects in one namespace and datagrams to a
    /// closed port in another are each counted in their namespace's `system_errors`, exactly,
    /// and not in the other's; the top-level `system_errors` stay portwatch's own namespace's.
    @Test func topCountsEachNamespacesSystemErrorsApart() throws {
        let lab = try CounterLab()
        defer { lab.destroy() }
        let (a, b) = (lab.members[0], lab.members[1])
        let run = try startPortwatchWhenReady(["top", "--json", "--all-namespaces", "--interval", "300ms",
                                               "--iterations", "200"])
        defer { run.child.kill() }
        try lab.refuse(in: a, connects: 7, datagrams: 0)
        try lab.refuse(in: b, connects: 0, datagrams: 11)
        let wanted = [a.inode: RefusalCounts(attemptFails: 7, outRsts: 7, udpNoPorts: 0),
                      b.inode: RefusalCounts(attemptFails: 0, outRsts: 0, udpNoPorts: 11)]
        var got: [UInt64: RefusalCounts] = [:]
        var lines: [String] = []
        // Refreshes until both namespaces' counts are in, and two more: a count arriving late,
        // twice, or in the wrong namespace would show there.
        var extra = 0
        while extra < 3, let line = run.child.readLine(timeout: 30) {
            lines.append(line)
            let doc = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "\(line)")
            for m in lab.members {
                let entries = doc.objects("system_errors_by_namespace").filter { $0.namespaceInode == m.inode }
                // Every namespace with a window has exactly one entry, named like its rows.
                if let entry = entries.first {
                    #expect(entries.count == 1, "\(line.prefix(4000))")
                    #expect(entry.object("namespace")?.string("name") == m.name)
                    #expect((entry["window_seconds"] as? NSNumber).map { $0.doubleValue > 0 } == true)
                }
                got[m.inode, default: RefusalCounts()].add(doc.systemErrors(ofNamespace: m.inode))
            }
            // The top-level object is the caller's own namespace's, as without the flags.
            let own = try #require(doc.ownSystemErrors, "\(line.prefix(4000))")
            #expect(NSDictionary(dictionary: own).isEqual(to: try #require(doc.object("system_errors"))))
            if got == wanted { extra += 1 }
        }
        let tail = lines.suffix(2).joined(separator: "\n").prefix(6000)
        for m in lab.members {
            #expect(got[m.inode] == wanted[m.inode], "\(m.name): \(String(describing: got[m.inode])); \(tail)")
        }
    }

    /// `ports --sample --all-namespaces`: the table's system lines name their namespace, each
    /// with its own counts; `--json` lists the same per namespace.
    @Test func sampleTableAndJSONNameEachNamespacesSystemErrors() throws {
        let lab = try CounterLab()
        defer { lab.destroy() }
        let (a, b) = (lab.members[0], lab.members[1])

        let table = try startPortwatchWhenReady(["ports", "--sample", "3s", "--all-namespaces"])
        try lab.refuse(in: a, connects: 3, datagrams: 0)
        try lab.refuse(in: b, connects: 0, datagrams: 5)
        let t = table.finish(timeout: 60)
        #expect(t.status == 0, "\(t)")
        let lines = t.stdout.split(separator: "\n").map(String.init)
        #expect(lines.contains("system (\(a.name)): attempt_fails 3, out_rsts 3"), "\(t)")
        #expect(lines.contains("system (\(b.name)): udp_no_ports 5"), "\(t)")
        // A namespace's line says only its own counts.
        #expect(lines.filter { $0.hasPrefix("system (\(a.name))") || $0.hasPrefix("system (\(b.name))") }.count == 2, "\(t)")

        let json = try startPortwatchWhenReady(["ports", "--sample", "3s", "--all-namespaces", "--json"])
        try lab.refuse(in: a, connects: 0, datagrams: 4)
        try lab.refuse(in: b, connects: 6, datagrams: 0)
        let j = json.finish(timeout: 60)
        #expect(j.status == 0, "\(j)")
        let doc = try #require(j.json())
        var inA = RefusalCounts(), inB = RefusalCounts()
        inA.add(try #require(doc.systemErrors(ofNamespace: a.inode), "\(j)"))
        inB.add(try #require(doc.systemErrors(ofNamespace: b.inode), "\(j)"))
        #expect(inA == RefusalCounts(attemptFails: 0, outRsts: 0, udpNoPorts: 4), "\(j)")
        #expect(inB == RefusalCounts(attemptFails: 6, outRsts: 6, udpNoPorts: 0), "\(j)")
        #expect(NSDictionary(dictionary: try #require(doc.ownSystemErrors)).isEqual(to: try #require(doc.object("system_errors"))))
    }

    /// A listener read from /proc/net/tcp (no backlog, no drops of its own) is overloaded with
    /// `system_listen_drops_rising` by the listen drops of the namespace it listens in: not by
    /// another namespace's drops in the same window, and by exactly its own namespace's count.
    /// portwatch runs inside namespace A with the procfs source (its own namespace is the one
    /// read from /proc/net/tcp; B is read through sock_diag).
    @Test func systemListenDropsAreTheListenersNamespaces() throws {
        let lab = try CounterLab()
        defer { lab.destroy() }
        let (a, b) = (lab.members[0], lab.members[1])
        let port = 8080
        let inA = try lab.overflowingListener(in: a, port: port)
        defer { inA.kill() }
        let inB = try lab.overflowingListener(in: b, port: port)
        defer { inB.kill() }
        let arguments = ["ports", String(port), "--sample", "3s", "--all-namespaces", "--json"]
        let environment = ["PORTWATCH_SOCKET_SOURCE": "procfs"]
        func drops(_ errors: [String: Any]?) -> Int {
            max(errors?.int("listen_drops") ?? 0, errors?.int("listen_overflows") ?? 0)
        }
        func reasonCount(_ doc: [String: Any], inode: UInt64) -> Int? {
            let row = doc.objects("ports").first { $0.namespaceInode == inode && $0.bool("listening") == true }
            return row?.objects("reasons").first { $0.string("reason") == "system_listen_drops_rising" }?.int("count")
        }

        // Drops in B only: A's listener is not overloaded by them.
        let first = try startPortwatchWhenReady(arguments, environment: environment, netns: a.name)
        try lab.flood(inB)
        let r1 = first.finish(timeout: 60)
        #expect(r1.status == 0, "\(r1)")
        let doc1 = try #require(r1.json())
        #expect(doc1.objects("ports").contains { $0.namespaceInode == a.inode && $0.bool("listening") == true }, "\(r1)")
        #expect(drops(doc1.systemErrors(ofNamespace: b.inode)) > 0, "\(r1)")
        #expect(drops(doc1.systemErrors(ofNamespace: a.inode)) == 0, "\(r1)")
        #expect(reasonCount(doc1, inode: a.inode) == nil, "\(r1)")

        // Drops in A (B's clients still retry there): A's listener carries A's count.
        let second = try startPortwatchWhenReady(arguments, environment: environment, netns: a.name)
        try lab.flood(inA)
        let r2 = second.finish(timeout: 60)
        #expect(r2.status == 0, "\(r2)")
        let doc2 = try #require(r2.json())
        let own = drops(doc2.systemErrors(ofNamespace: a.inode))
        #expect(own > 0, "\(r2)")
        #expect(reasonCount(doc2, inode: a.inode) == own, "\(r2)")
        // A's own namespace is the top-level one (portwatch runs there).
        #expect(drops(doc2.object("system_errors")) == own, "\(r2)")
    }

    /// The full-screen `top --all-namespaces`: its "system errors" line names each namespace
    /// whose counters moved, with that namespace's own counts.
    @Test(.enabled(if: TestEnv.which("tmux") != nil, "needs tmux to drive the full-screen view"))
    func topsSystemLineNamesEachNamespace() throws {
        let tmux = try #require(TestEnv.which("tmux"))
        let lab = try CounterLab()
        defer { lab.destroy() }
        let (a, b) = (lab.members[0], lab.members[1])
        let session = "pwse\(getpid())"
        // Wide enough that no namespace's part of the line is cut off.
        let start = runTool(tmux, ["new-session", "-d", "-s", session, "-x", "500", "-y", "30",
                                   "env", "-i", "PATH=/usr/bin:/bin", "TERM=xterm", "PS1=READY$ ", "bash", "--norc", "--noprofile"])
        #expect(start.status == 0, "\(start.stderr)")
        defer { _ = runTool(tmux, ["kill-session", "-t", session]) }
        func screen() -> String { runTool(tmux, ["capture-pane", "-p", "-t", session]).stdout }
        #expect(poll(timeout: 5) { screen().contains("READY$") })
        let ready = freshReadyFile()
        defer { unlink(ready) }
        _ = runTool(tmux, ["send-keys", "-t", session,
                           "\(TestEnv.portwatchPath) top --all-namespaces --interval 1s --ready-file \(ready)", "Enter"])
        #expect(poll(timeout: 30) { access(ready, F_OK) == 0 }, "\(screen())")
        // One connect and one datagram each: a window cannot split them.
        try lab.refuse(in: a, connects: 1, datagrams: 0)
        try lab.refuse(in: b, connects: 0, datagrams: 1)
        var seenA = false, seenB = false
        _ = poll(timeout: 20, interval: 0.1) {
            let line = screen().split(separator: "\n").first { $0.hasPrefix("system errors: ") } ?? ""
            seenA = seenA || line.contains("\(a.name): attempt_fails 1, out_rsts 1")
            seenB = seenB || line.contains("\(b.name): udp_no_ports 1")
            return seenA && seenB
        }
        #expect(seenA && seenB, "\(screen())")
        _ = runTool(tmux, ["send-keys", "-t", session, "q"])
    }

    /// `--netns NAME`: the one namespace's counters are the top-level `system_errors`, and its
    /// one entry in `system_errors_by_namespace`.
    @Test func oneNamespaceIsTheTopLevelSystemErrors() throws {
        let lab = try CounterLab()
        defer { lab.destroy() }
        let a = lab.members[0]
        let run = try startPortwatchWhenReady(["ports", "--sample", "2s", "--netns", a.name, "--json"])
        try lab.refuse(in: a, connects: 2, datagrams: 3)
        let r = run.finish(timeout: 60)
        #expect(r.status == 0, "\(r)")
        let doc = try #require(r.json())
        var top = RefusalCounts()
        top.add(try #require(doc.object("system_errors"), "\(r)"))
        #expect(top == RefusalCounts(attemptFails: 2, outRsts: 2, udpNoPorts: 3), "\(r)")
        let entries = doc.objects("system_errors_by_namespace")
        #expect(entries.count == 1 && entries.first?.namespaceInode == a.inode, "\(r)")
    }
}

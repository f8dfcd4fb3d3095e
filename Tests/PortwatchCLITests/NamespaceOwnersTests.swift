// Owners of sockets in other namespaces when processes hold thousands of fds, on a loaded
// machine, and without root. Busy python3 children (`busyScript`) hold thousands of open fds
// (pipes, files, unix sockets) and open their listener last, so it sits on their highest fd:
// the owner search must reach above fd 1023 of the right process. `ss -ltnp` inside the
// namespace is the truth for who holds the listener. Names carry our pid.

import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A python3 child holding FILL open fds, then a listener on 127.0.0.1 (kernel-picked port),
/// then CONNS established connections to it (both ends in the child); prints "PID PORT FD"
/// (FD: the listener's). With a path to `ip` as third argument it first brings `lo` up.
private let busyScript = #"""
import os, resource, socket, sys
fill, conns = int(sys.argv[1]), int(sys.argv[2])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, fill + 2 * conns + 64), hard))
if len(sys.argv) > 3:
    os.system(sys.argv[3] + " link set lo up")
keep = []
i = 0
while len(keep) < fill:
    i += 1
    if i % 3 == 0:
        keep.extend(os.pipe())
    elif i % 3 == 1:
        keep.append(os.open("/dev/null", os.O_RDONLY))
    else:
        keep.append(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(128)
port = srv.getsockname()[1]
clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(conns)]
accepted = [srv.accept()[0] for _ in range(conns)]
print(os.getpid(), port, srv.fileno(), flush=True)
for line in sys.stdin:
    pass
"""#

/// A python3 child inside a namespace that serves a listener of its own and makes at most
/// COUNT short connections to it (connect, send one byte, close), stopping after SECONDS at
/// the latest; prints "PORT" when listening, "done N" at the end.
private let churnScript = #"""
import os, socket, sys, threading, time
count, seconds = int(sys.argv[1]), float(sys.argv[2])
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(256)
port = srv.getsockname()[1]
def serve():
    while True:
        try:
            c, _ = srv.accept()
            c.recv(1)
            c.close()
        except OSError:
            return
threading.Thread(target=serve, daemon=True).start()
print(port, flush=True)
sys.stdin.readline()
end = time.monotonic() + seconds
n = 0
while n < count and time.monotonic() < end:
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"x")
    s.close()
    n += 1
print("done", n, flush=True)
for line in sys.stdin:
    pass
"""#

/// One busy child: its pid, its listener's port and fd.
private struct BusyChild {
    let child: Child
    let pid: Int32
    let port: Int
    let listenerFd: Int
}

private func startBusy(_ lab: NamespaceLab, fds: Int, connections: Int, in place: ChildPlace) throws -> BusyChild {
    var arguments = [String(fds), String(connections)]
    if case .unnamed = place, let ip = TestEnv.ip { arguments.append(ip) }
    let (child, line) = try lab.startPython(busyScript, arguments, in: place, timeout: 60)
    let f = line.split(separator: " ").compactMap { Int($0) }
    guard f.count == 3, let pid = Int32(exactly: f[0]) else { throw SupportError("busy child said '\(line)'") }
    return BusyChild(child: child, pid: pid, port: f[1], listenerFd: f[2])
}

/// The pid `ss -ltnp` inside `netns` names for the listener on `port`: the truth.
private func ssListenerPid(_ lab: NamespaceLab, _ netns: String, port: Int) -> Int32? {
    let r = lab.exec(netns, ["ss", "-ltnpH", "sport = :\(port)"])
    guard r.status == 0, let range = r.stdout.range(of: "pid=") else { return nil }
    return Int32(r.stdout[range.upperBound...].prefix { $0.isNumber })
}

/// The listening row of `port` in the namespace with `inode`, from a `ports --json` document.
private func listenerRow(_ doc: [String: Any]?, port: Int, inode: UInt64? = nil) -> [String: Any]? {
    doc?.objects("ports").first {
        $0.int("port") == port && $0.bool("listening") == true && $0.string("protocol") == "tcp"
            && (inode == nil || $0.namespaceInode == inode)
    }
}

/// The name the kernel gives process `pid` (what `ss -p` and portwatch show).
private func comm(_ pid: Int32) -> String? {
    (try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
}

@Suite("namespaces: owners among thousands of fds", .blocking,
       .enabled(if: TestEnv.canCreateNamespaces && TestEnv.which("ss") != nil,
                "needs root with CAP_SYS_ADMIN, ip, ss and python3 to build network namespaces"))
struct NamespaceOwnersTests {
    /// A container's server holding 9,000 fds, its listener on the last, is named by every view
    /// of its namespace although host processes with thousands of fds each would take the
    /// bounded search's whole budget first (smallest tables first): the processes living in the
    /// namespace asked about are searched first. `--all-namespaces` names it or says honestly
    /// that the budget ended the search; no row changes namespace.
    @Test func busyServerInANamespaceIsNamedInEveryView() throws {
        let lab = try NamespaceLab(names: ["pwo-\(getpid())-\(NamespaceLab.nextSerial())"])
        defer { lab.destroy() }
        let ns = lab.namespaces[0]
        // Host crowd: each smaller than the namespace's server, together 12,000 fds above 1023.
        let crowd = try (0..<3).map { _ in try startBusy(lab, fds: 5000, connections: 2, in: .host) }
        let server = try startBusy(lab, fds: 9000, connections: 3, in: .named(ns.name))
        #expect(server.listenerFd > 9000)
        let truth = ssListenerPid(lab, ns.name, port: server.port)
        try #require(truth == server.pid, "ss -ltnp in \(ns.name) names \(truth.map(String.init) ?? "nobody")")

        let one = runPortwatch(["ports", "--netns", ns.name, "--json"], timeout: 60)
        #expect(one.status == 0, "\(one)")
        let row = try #require(listenerRow(one.json(), port: server.port), "\(one)")
        #expect(row.pids() == [server.pid], "ports --netns: \(row.objects("processes")) vs ss pid \(server.pid)")
        let process = row.objects("processes").first
        #expect(process?.string("name") == comm(server.pid))
        // The keys are there, null outside containers and units.
        #expect(process.map { $0.keys.contains("container") && $0.keys.contains("unit") } == true)
        #expect(row.object("connections")?.int("established") == 3)
        #expect(row.namespaceInode == ns.inode)

        let check = runPortwatch(["check", String(server.port), "--netns", ns.name, "--json"], timeout: 60)
        #expect(check.status == 1, "\(check)")  // busy, not the default expectation free
        let verdict = check.json()
        #expect(verdict?.string("verdict") == "busy")
        #expect(verdict?.pids() == [server.pid], "check --netns: \(check)")
        #expect(verdict?.strings("notes")?.contains { $0.contains("without a visible owner") } == false)

        let who = runPortwatch(["who", String(server.port), "--netns", ns.name, "--json"], timeout: 60)
        #expect(who.status == 0, "\(who)")
        let held = who.json()?.objects("results").first
        #expect(held?.pids() == [server.pid], "who --netns: \(who)")
        #expect(held?.namespaceInode == ns.inode)

        let all = runPortwatch(["ports", "--all-namespaces", "--json"], timeout: 90)
        #expect(all.status == 0, "\(all)")
        let doc = all.json()
        let notes = doc?.strings("notes") ?? []
        let budgetNote = notes.contains { $0.contains("without a visible owner") }
        for (busy, inode) in [(server, ns.inode)] + crowd.map({ ($0, UInt64?.none) }) {
            let rows = doc?.objects("ports").filter { $0.int("port") == busy.port && $0.bool("listening") == true
                && $0.pids().contains(busy.pid) } ?? []
            // Never on another namespace's row.
            for r in rows where inode != nil { #expect(r.namespaceInode == inode, "\(busy.pid) on \(r)") }
            if let inode {
                let mine = listenerRow(doc, port: busy.port, inode: inode)
                #expect(mine != nil, "no listener row of \(busy.port) in \(ns.name)")
                // Named, or the note says the budget ended the search: never a silent blank.
                #expect(mine?.pids() == [busy.pid] || (mine?.pids().isEmpty == true && budgetNote), "\(notes)")
            } else if rows.isEmpty {
                #expect(budgetNote, "host busy \(busy.pid) unnamed without a note: \(notes)")
            }
        }
        // The namespace's server sits on no row of another namespace.
        let strays = doc?.objects("ports").filter { $0.pids().contains(server.pid) && $0.namespaceInode != ns.inode } ?? []
        #expect(strays.isEmpty, "\(strays)")
    }

    /// A server whose fds above 1023 alone exceed the bounded search's 16,384: `ports` and
    /// `check` do not guess and do not stay silent (a note in the document says the budget ended
    /// the search and points to `who`); `who` reads every fd and names it, as `ss -ltnp` does.
    @Test func serverBeyondTheBudgetIsSaidNotGuessed() throws {
        let lab = try NamespaceLab(names: ["pwo-\(getpid())-\(NamespaceLab.nextSerial())"])
        defer { lab.destroy() }
        let ns = lab.namespaces[0]
        var limit = rlimit()
        getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit)
        let fds = 18_500
        try #require(limit.rlim_max >= rlim_t(fds + 100), "hard RLIMIT_NOFILE \(limit.rlim_max) is below \(fds + 100)")
        let server = try startBusy(lab, fds: fds, connections: 2, in: .named(ns.name))
        #expect(server.listenerFd > fds)
        try #require(ssListenerPid(lab, ns.name, port: server.port) == server.pid)

        let one = runPortwatch(["ports", "--netns", ns.name, "--json"], timeout: 60)
        #expect(one.status == 0, "\(one)")
        let doc = one.json()
        let row = listenerRow(doc, port: server.port)
        #expect(row?.pids().isEmpty == true, "\(one)")
        let note = "without a visible owner: the highest file descriptors of the busiest processes were not searched (portwatch who PORT searches them all)"
        #expect(doc?.strings("notes")?.contains { $0.hasSuffix(note) } == true, "\(one)")

        let check = runPortwatch(["check", String(server.port), "--netns", ns.name, "--json"], timeout: 60)
        let verdict = check.json()
        #expect(verdict?.string("verdict") == "busy", "\(check)")
        #expect(verdict?.pids().isEmpty == true)
        #expect(verdict?.strings("notes")?.contains { $0.hasSuffix(note) } == true, "\(check)")

        let who = runPortwatch(["who", String(server.port), "--netns", ns.name, "--json"], timeout: 60)
        #expect(who.status == 0, "\(who)")
        #expect(who.json()?.objects("results").first?.pids() == [server.pid], "\(who)")
    }

    /// Under CPU load and while the namespace churns short connections (both bounded), the
    /// views still list the busy listener in its namespace with its owner and its exact
    /// established count (churn is on another port), and `top --all-namespaces` counts the
    /// bytes of a known connection exactly. Only what load cannot change is asserted.
    @Test func viewsStayRightUnderLoadAndChurn() throws {
        let lab = try NamespaceLab(names: ["pwo-\(getpid())-\(NamespaceLab.nextSerial())"])
        defer { lab.destroy() }
        let ns = lab.namespaces[0]
        let server = try startBusy(lab, fds: 5000, connections: 4, in: .named(ns.name))
        _ = try startBusy(lab, fds: 6000, connections: 2, in: .host)
        let holder = try lab.startHolder(port: 8080, connections: 2, bytes: 4321, in: .named(ns.name))
        let (churn, churnLine) = try lab.startPython(churnScript, ["400", "25"], in: .named(ns.name))
        let churnPort = try #require(Int(churnLine))
        var stress: Child? = nil
        if let stressNg = TestEnv.which("stress-ng") {
            stress = try Child.spawn(stressNg, ["--cpu", "2", "--timeout", "30s", "--quiet"])
        }
        defer {
            // SIGTERM first: stress-ng then stops its workers (a SIGKILL would leave them to their timeout).
            if let stress {
                Glibc.kill(stress.pid, SIGTERM)
                _ = stress.wait(timeout: 10)
                stress.kill()
            }
        }
        let go = "go\n"
        _ = go.withCString { write(churn.stdinFD, $0, 3) }

        for _ in 0..<3 {
            let one = runPortwatch(["ports", "--netns", ns.name, "--json"], timeout: 90)
            #expect(one.status == 0, "\(one)")
            let doc = one.json()
            let row = listenerRow(doc, port: server.port)
            #expect(row?.pids() == [server.pid], "\(one)")
            #expect(row?.object("connections")?.int("established") == 4)
            #expect(listenerRow(doc, port: 8080)?.pids() == [holder.pid])
            #expect(listenerRow(doc, port: churnPort) != nil, "churn listener missing: \(one)")
            // Churn explains at most its 400 connections on its own port.
            #expect((listenerRow(doc, port: churnPort)?.object("connections")?.int("total") ?? 0) <= 400)
            #expect(doc?.objects("ports").allSatisfy { $0.namespaceInode == ns.inode } == true)

            let all = runPortwatch(["ports", "--all-namespaces", "--json"], timeout: 90)
            #expect(all.status == 0, "\(all)")
            let rows = all.json()?.objects("ports") ?? []
            let ours = Set([server.pid, holder.pid, churn.pid])
            for r in rows where !Set(r.pids()).isDisjoint(with: ours) {
                #expect(r.namespaceInode == ns.inode, "a row of \(ns.name) moved: \(r)")
            }
            for port in [server.port, 8080, churnPort] {
                #expect(listenerRow(all.json(), port: port, inode: ns.inode) != nil, "port \(port) missing in \(ns.name)")
            }

            let check = runPortwatch(["check", String(server.port), "--netns", ns.name, "--json"], timeout: 90)
            #expect(check.json()?.string("verdict") == "busy", "\(check)")
            #expect(check.json()?.pids() == [server.pid])
            let who = runPortwatch(["who", String(server.port), "--netns", ns.name, "--json"], timeout: 90)
            #expect(who.status == 0, "\(who)")
            #expect(who.json()?.objects("results").first?.pids() == [server.pid])
        }

        // Traffic of a known connection, exact although the machine is busy and the namespace
        // churns: the window spans the whole traffic, however slowly each side runs.
        let run = try startPortwatchWhenReady(["top", "8080", "--all-namespaces", "--json", "--iterations", "3",
                                               "--interval", "3s"])
        try ConnectionHolder.trafficAndClose([holder])
        let r = run.finish(timeout: 90)
        #expect(r.status == 0, "\(r)")
        var received = 0
        for line in r.stdout.split(separator: "\n") {
            let doc = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            for row in doc.objects("ports") where row.int("port") == 8080 && row.string("role") == "local"
                && row.namespaceInode == ns.inode {
                received += row.object("window")?.object("bytes")?.int("received") ?? 0
            }
        }
        #expect(received == 2 * 4321, "\(r)")
        let done = churn.readLine(timeout: 60) ?? ""
        #expect(done.hasPrefix("done "), "churn: \(done) \(churn.drainStderr())")
    }
}

@Suite("namespaces: owners among thousands of fds, without privileges", .blocking,
       .enabled(if: TestEnv.canCreateNamespaces && TestEnv.which("setpriv") != nil,
                "needs root (to make the namespace, then drop privileges), ip, python3 and setpriv"))
struct NamespaceOwnersPrivilegeTests {
    /// As nobody, with root's processes holding thousands of fds around: the host's busy
    /// listener is listed with no owner (never a wrong one) and a note naming what is missing,
    /// the namespace that cannot be entered is named, `--netns` of it and `who` of the hidden
    /// owner are exit 2 with one line.
    @Test func unprivilegedViewsAreHonestAmongBusyProcesses() throws {
        guard let setpriv = TestEnv.which("setpriv") else { return }
        let lab = try NamespaceLab(names: ["pwo-\(getpid())-\(NamespaceLab.nextSerial())"])
        defer { lab.destroy() }
        let ns = lab.namespaces[0]
        let host = try startBusy(lab, fds: 5000, connections: 2, in: .host)
        let inside = try startBusy(lab, fds: 5000, connections: 2, in: .named(ns.name))
        let drop = ["--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all",
                    TestEnv.portwatchPath]

        let all = runTool(setpriv, drop + ["ports", "--all-namespaces", "--json"], timeout: 90)
        #expect(all.status == 0, "\(all)")
        let doc = try #require(try JSONSerialization.jsonObject(with: Data(all.stdout.utf8)) as? [String: Any], "\(all)")
        let notes = doc.strings("notes") ?? []
        #expect(notes.contains("network namespace \(ns.name) could not be entered — needs root or CAP_SYS_ADMIN"), "\(notes)")
        #expect(notes.contains { $0.contains("could not be inspected — needs root or CAP_SYS_PTRACE") }, "\(notes)")
        let row = listenerRow(doc, port: host.port)
        #expect(row != nil, "the host's busy listener is missing: \(all)")
        #expect(row?.pids().isEmpty == true, "an owner nobody may see was named: \(row ?? [:])")
        #expect(row?.object("connections")?.int("established") == 2)
        #expect(doc.objects("ports").allSatisfy { $0.namespaceInode != ns.inode })
        #expect(doc.objects("ports").allSatisfy { !$0.pids().contains(inside.pid) })

        for args in [["ports", "--netns", ns.name], ["who", String(inside.port), "--netns", ns.name],
                     ["check", String(inside.port), "--netns", ns.name]] {
            let r = runTool(setpriv, drop + args, timeout: 60)
            #expect(r.status == 2, "\(args): \(r)")
            #expect(r.stderr.hasPrefix("portwatch: ") && r.stderr.split(separator: "\n").count == 1, "\(args): \(r)")
            #expect(r.stderr.contains(ns.name), "\(args): \(r)")
        }

        // The verdict needs no owner; the missing owner is said, not left blank.
        let check = runTool(setpriv, drop + ["check", String(host.port), "--json"], timeout: 60)
        #expect(check.status == 1, "\(check)")
        let verdict = try JSONSerialization.jsonObject(with: Data(check.stdout.utf8)) as? [String: Any]
        #expect(verdict?.string("verdict") == "busy", "\(check)")
        #expect(verdict?.pids().isEmpty == true)
        #expect(verdict?.strings("notes")?.contains { $0.contains("needs root or CAP_SYS_PTRACE") } == true, "\(check)")

        // nobody's own busy server (5,000 fds, listener last) is named by nobody's portwatch:
        // the hidden processes of others do not hide what may be seen.
        let python = try #require(TestEnv.python3)
        let own = try Child.spawn(setpriv, Array(drop.dropLast()) + [python, "-u", "-c", busyScript, "5000", "2"], stdin: .pipe)
        lab.adopt(own)
        let ownLine = own.readLine(timeout: 60) ?? ""
        let ownFields = ownLine.split(separator: " ").compactMap { Int($0) }
        try #require(ownFields.count == 3, "nobody's busy child said '\(ownLine)': \(own.drainStderr())")
        let (ownPid, ownPort) = (Int32(ownFields[0]), ownFields[1])
        let ownPorts = runTool(setpriv, drop + ["ports", String(ownPort), "--json"], timeout: 60)
        let ownDoc = try JSONSerialization.jsonObject(with: Data(ownPorts.stdout.utf8)) as? [String: Any]
        #expect(listenerRow(ownDoc, port: ownPort)?.pids() == [ownPid], "\(ownPorts)")
        let ownCheck = runTool(setpriv, drop + ["check", String(ownPort), "--json"], timeout: 60)
        let ownVerdict = try JSONSerialization.jsonObject(with: Data(ownCheck.stdout.utf8)) as? [String: Any]
        #expect(ownVerdict?.pids() == [ownPid], "\(ownCheck)")
        let ownWho = runTool(setpriv, drop + ["who", String(ownPort), "--json"], timeout: 60)
        #expect(ownWho.status == 0, "\(ownWho)")
        let ownHeld = try JSONSerialization.jsonObject(with: Data(ownWho.stdout.utf8)) as? [String: Any]
        #expect(ownHeld?.pids() == [ownPid], "\(ownWho)")

        // `who` cannot answer without the hidden owners: exit 2, one line, the capability named.
        let who = runTool(setpriv, drop + ["who", String(host.port)], timeout: 60)
        #expect(who.status == 2, "\(who)")
        #expect(who.stderr.hasPrefix("portwatch: ") && who.stderr.split(separator: "\n").count == 1, "\(who)")
        #expect(who.stderr.contains("CAP_SYS_PTRACE"), "\(who)")
    }
}

@Suite("namespaces: a busy container's owner", .blocking,
       .enabled(if: TestEnv.canCreateNamespaces && FakeContainerCgroup.root != nil,
                "needs root, ip, python3 and a writable cgroup hierarchy"))
struct NamespaceBusyContainerTests {
    /// A container's server (a docker-named cgroup) holding 6,000 fds, its listener on the last,
    /// next to a busier host process: every view of its namespace names the process and its
    /// container, as `ss -ltnp` names the pid.
    @Test func busyContainerServerIsNamedWithItsContainer() throws {
        let id = String(repeating: "beef01", count: 11).prefix(63) + "\(getpid() % 10)"
        let cgroup = try FakeContainerCgroup(slice: "pwowners", id: String(id))
        let lab = try NamespaceLab(names: ["pwo-\(getpid())-\(NamespaceLab.nextSerial())"])
        defer { lab.destroy() }
        let ns = lab.namespaces[0]
        _ = try startBusy(lab, fds: 8000, connections: 2, in: .host)
        let server = try startBusy(lab, fds: 6000, connections: 2, in: .named(ns.name))
        try cgroup.adopt(server.pid)
        // Back to the root before the server goes, so the fake cgroup can go too.
        defer { cgroup.remove() }
        try #require(ssListenerPid(lab, ns.name, port: server.port) == server.pid)

        let one = runPortwatch(["ports", "--netns", ns.name, "--json"], timeout: 60)
        let row = listenerRow(one.json(), port: server.port)
        #expect(row?.pids() == [server.pid], "\(one)")
        #expect(row?.object("container")?.string("id") == String(id), "\(one)")
        #expect(row?.object("container")?.string("runtime") == "docker")
        #expect(row?.objects("processes").first?.string("container") == String(id))

        let all = runPortwatch(["ports", "--all-namespaces", "--json"], timeout: 90)
        let allRow = listenerRow(all.json(), port: server.port, inode: ns.inode)
        #expect(allRow?.pids() == [server.pid] || allRow?.pids().isEmpty == true, "\(all)")
        if allRow?.pids() == [server.pid] { #expect(allRow?.object("container")?.string("id") == String(id)) }

        let check = runPortwatch(["check", String(server.port), "--netns", ns.name, "--json"], timeout: 60)
        let verdict = check.json()
        #expect(verdict?.pids() == [server.pid], "\(check)")
        #expect(verdict?.object("container")?.string("id") == String(id), "\(check)")

        let who = runPortwatch(["who", String(server.port), "--netns", ns.name, "--json"], timeout: 60)
        let held = who.json()?.objects("results").first
        #expect(held?.pids() == [server.pid], "\(who)")
        #expect(held?.objects("processes").first?.string("container") == String(id), "\(who)")
    }
}

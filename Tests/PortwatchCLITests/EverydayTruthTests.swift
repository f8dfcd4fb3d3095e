// Issue 6's everyday defects, each against real sockets on loopback whose truth the test knows:
// what holds a port, which side of a connection is the server's, and what each verdict means.

import Foundation
import Testing
import PortwatchTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// `ARGS --json` parsed (nil when stdout is not a JSON object).
private func jsonOf(_ r: PortwatchResult) -> [String: Any]? {
    (try? JSONSerialization.jsonObject(with: r.stdout.data(using: .utf8) ?? Data())) as? [String: Any]
}

/// The `ports SPEC --json` row for (proto, port), or nil.
private func row(_ doc: [String: Any]?, proto: String = "tcp", port: UInt16, role: String = "local") -> [String: Any]? {
    doc?.objects("ports").first { $0.string("protocol") == proto && $0.int("port") == Int(port) && $0.string("role") == role }
}

/// Sets SO_LINGER {on, 0}: close() then sends a reset instead of a FIN.
private func lingerZero(_ s: TestSocket) {
    var l = linger(l_onoff: 1, l_linger: 0)
    setsockopt(s.fd, SOL_SOCKET, SO_LINGER, &l, socklen_t(MemoryLayout<linger>.size))
}

/// Connects a UDP socket to `port` on 127.0.0.1.
private func connectUDP(_ s: TestSocket, to port: UInt16) throws {
    var (storage, length, _) = try makeSockaddr("127.0.0.1", port)
    let rc = withUnsafePointer(to: &storage) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(s.fd, $0, length) }
    }
    if rc != 0 { throw SupportError.errno("connect udp") }
}

/// A network namespace of the test's own (`pw-PID-NAMEN`), or nil where none can be made (the
/// test then runs in ours, among other tests' sockets).
private func privateNamespace(_ name: String) throws -> NamespaceLab? {
    guard TestEnv.canCreateNamespaces else { return nil }
    return try NamespaceLab(names: ["pw-\(getpid())-\(name)\(NamespaceLab.nextSerial())"])
}

/// `--netns NAME`, or nothing for our own namespace.
private func netnsArguments(_ ns: String?) -> [String] { ns.map { ["--netns", $0] } ?? [] }

@Suite("everyday truths: who holds a port, which side serves, what a verdict means", .blocking)
struct EverydayTruthTests {
    /// Defect 1: only a listener meets `--expect listening`; a bound-only socket and a client's
    /// source port make a port busy, not listening — and `check` and `wait` agree.
    @Test func expectListeningNeedsAListener() throws {
        let (bound, server, client) = try Net.onFreePorts(3) { p -> (TestSocket, TestSocket, TestSocket) in
            (try Net.tcpBound("127.0.0.1", port: p[0]), try Net.tcpListener("127.0.0.1", port: p[1], backlog: 4),
             try Net.connect("127.0.0.1", port: p[1], from: ("127.0.0.1", p[2])))
        }
        defer { bound.close(); server.close(); client.close() }

        for port in [bound.port, client.port] {
            let listening = runPortwatch(["check", "\(port)", "--expect", "listening", "--json"])
            #expect(listening.status == 1, "port \(port) has no listener: \(listening)")
            #expect(jsonOf(listening)?.string("verdict") == "busy", "\(listening)")
            #expect(jsonOf(listening)?.bool("matched") == false, "\(listening)")
            #expect(runPortwatch(["check", "\(port)", "--expect", "busy"]).status == 0)
            let wait = runPortwatch(["wait", "\(port)", "--until", "listening", "--timeout", "300ms"])
            #expect(wait.status == 1, "\(wait)")
        }
        let clientCheck = jsonOf(runPortwatch(["check", "\(client.port)", "--json"]))
        #expect(clientCheck?.int("client_connections") == 1, "\(String(describing: clientCheck))")
        #expect(runPortwatch(["check", "\(server.port)", "--expect", "listening"]).status == 0)
        #expect(runPortwatch(["wait", "\(server.port)", "--until", "listening", "--timeout", "2s"]).status == 0)
    }

    /// Defect 4: `who` names the holder of a port however it holds it.
    @Test func whoNamesBoundConnectedAndUDPHolders() throws {
        let (bound, server, client, udpServer, udpClient) = try Net.onFreePorts(5) { p in
            (try Net.tcpBound("127.0.0.1", port: p[0]), try Net.tcpListener("127.0.0.1", port: p[1], backlog: 4),
             try Net.connect("127.0.0.1", port: p[1], from: ("127.0.0.1", p[2])),
             try Net.udpSocket("127.0.0.1", port: p[3]), try Net.udpSocket("127.0.0.1", port: p[4]))
        }
        defer { bound.close(); server.close(); client.close(); udpServer.close(); udpClient.close() }
        try connectUDP(udpClient, to: udpServer.port)

        let cases: [(String, String)] = [("\(bound.port)", "bound"), ("\(client.port)", "connected"),
                                         ("\(udpClient.port)/udp", "connected"), ("\(server.port)", "listening")]
        for (spec, kind) in cases {
            let who = runPortwatch(["who", spec, "--json"])
            let me = jsonOf(who)?.objects("processes").first { $0.int("pid") == Int(getpid()) }
            #expect(who.status == 0 && me != nil, "who \(spec) must name this process: \(who)")
            #expect(me?.strings("holds") == [kind], "who \(spec): \(who)")
            let text = runPortwatch(["who", spec])
            #expect(text.status == 0 && text.stdout.contains(kind), "\(text)")
        }
        // A UDP socket bound on the client's port number does not hide the TCP client.
        let sameNumber = try Net.udpSocket("127.0.0.1", port: client.port)
        defer { sameNumber.close() }
        let both = runPortwatch(["who", "\(client.port)", "--json"])
        let tcpEntry = jsonOf(both)?.objects("results").first { $0.string("protocol") == "tcp" }
        #expect(tcpEntry?.objects("processes").first { $0.int("pid") == Int(getpid()) }?.strings("holds") == ["connected"],
                "\(both)")
    }

    /// Defect 3: server-side connections stay on the server's port after the listener closes,
    /// also when both ports lie in the ephemeral range (a kernel-picked listener port). In a
    /// namespace of its own where one can be made, so no other test's socket shares a port.
    @Test func serverConnectionsOutliveTheirListener() throws {
        let lab = try privateNamespace("outlive")
        defer { lab?.destroy() }
        let ns = lab?.names.first
        let (listener, clients) = try Net.inside(ns) { () throws -> (TestSocket, [TestSocket]) in
            let l = try Net.tcpListener("127.0.0.1", port: 0, backlog: 8)
            return (l, try (0..<2).map { _ in try Net.connect("127.0.0.1", port: l.port) })
        }
        let port = listener.port
        let accepted = try clients.map { _ in try Net.accept(listener) }
        defer { clients.forEach { $0.close() }; accepted.forEach { $0.close() } }
        listener.close()

        let ports = runPortwatch(["ports", "\(port)", "--json"] + netnsArguments(ns))
        let serverRow = row(jsonOf(ports), port: port)
        #expect(ports.status == 0 && serverRow?.object("connections")?.int("established") == 2, "\(ports)")
        #expect(serverRow?.pids().contains(getpid()) == true, "\(ports)")
        let who = runPortwatch(["who", "\(port)", "--json"] + netnsArguments(ns))
        // With --netns, `who` answers per namespace (`results`).
        let holders = jsonOf(who).flatMap { $0.objects("results").first ?? $0 }?.pids() ?? []
        #expect(who.status == 0 && holders.contains(getpid()), "\(who)")
        let all = jsonOf(runPortwatch(["ports", "--all", "--json"] + netnsArguments(ns)))
        for c in clients {
            #expect(row(all, port: c.port, role: "remote") == nil, "the server's sockets went 'outgoing' to \(c.port)")
            #expect(row(all, port: c.port) == nil, "a client's source port \(c.port) became a row")
        }
        #expect(row(all, port: port, role: "remote")?.object("connections")?.int("established") == 2)
    }

    /// connect() gives one source port to connections to different destinations (and a TIME_WAIT
    /// of an earlier one stays on it): such a port is a client's, not a server's. Two clients
    /// bound to one source port (SO_REUSEADDR) connect to two listeners, a third client to the
    /// first; the second client closes first (TIME_WAIT); then the first listener closes. All
    /// ports are kernel-picked, inside the ephemeral range, so the ports alone never tell.
    @Test func clientsSharingASourcePortAreNoServer() throws {
        let lab = try privateNamespace("share")
        defer { lab?.destroy() }
        let ns = lab?.names.first
        let (a, b, first, second, third) = try Net.inside(ns) {
            () throws -> (TestSocket, TestSocket, TestSocket, TestSocket, TestSocket) in
            let a = try Net.tcpListener("127.0.0.1", port: 0, backlog: 8)
            let b = try Net.tcpListener("127.0.0.1", port: 0, backlog: 8)
            let first = try Net.connect("127.0.0.1", port: a.port, from: ("127.0.0.1", 0), reuseAddress: true)
            let second = try Net.connect("127.0.0.1", port: b.port, from: ("127.0.0.1", first.port), reuseAddress: true)
            return (a, b, first, second, try Net.connect("127.0.0.1", port: a.port))
        }
        let servedA = try (0..<2).map { _ in try Net.accept(a) }
        let servedB = try Net.accept(b)
        defer { [a, b, first, second, third, servedB].forEach { $0.close() }; servedA.forEach { $0.close() } }
        let source = first.port
        #expect(second.port == source)
        // Without a namespace of our own, other tests' sockets may use these port numbers too.
        let atLeast: (Int?, Int) -> Bool = { count, expected in ns == nil ? (count ?? 0) >= expected : count == expected }
        let look = { jsonOf(runPortwatch(["ports", "--all", "--json"] + netnsArguments(ns))) }
        let count = { (doc: [String: Any]?, port: UInt16, role: String, state: String) -> Int? in
            row(doc, port: port, role: role)?.object("connections")?.int(state)
        }

        var doc = look()
        #expect(row(doc, port: source) == nil, "the shared source port \(source) became a row: \(String(describing: doc))")
        #expect(atLeast(count(doc, a.port, "remote", "established"), 2), "\(String(describing: doc))")
        #expect(atLeast(count(doc, b.port, "remote", "established"), 1), "\(String(describing: doc))")
        #expect(atLeast(count(doc, a.port, "local", "established"), 2), "\(String(describing: doc))")
        #expect(atLeast(count(doc, b.port, "local", "established"), 1), "\(String(describing: doc))")

        second.close()  // the client closes first: its socket sits in TIME_WAIT on the shared port
        #expect(servedB.waitForEOF(timeout: 5))
        servedB.close()
        poll(timeout: 3, interval: 0.05) {
            doc = look()
            return count(doc, b.port, "remote", "time_wait") == 1 && count(doc, b.port, "local", "total") == 0
        }
        #expect(row(doc, port: source) == nil, "the shared source port \(source) became a row: \(String(describing: doc))")
        #expect(atLeast(count(doc, a.port, "remote", "established"), 2), "\(String(describing: doc))")
        #expect(count(doc, b.port, "remote", "time_wait") == 1, "\(String(describing: doc))")
        #expect(atLeast(count(doc, a.port, "local", "established"), 2), "\(String(describing: doc))")

        a.close()  // the real case: a client of a closed listener beside a TIME_WAIT on its port
        doc = look()
        #expect(row(doc, port: source) == nil, "the source port \(source) became a row: \(String(describing: doc))")
        #expect(row(doc, port: a.port)?.bool("listening") == false, "\(String(describing: doc))")
        #expect(atLeast(count(doc, a.port, "remote", "established"), 2), "\(String(describing: doc))")
        #expect(atLeast(count(doc, a.port, "local", "established"), 2), "\(String(describing: doc))")
        #expect(count(doc, b.port, "remote", "time_wait") == 1, "\(String(describing: doc))")
        #expect(row(doc, port: third.port) == nil && row(doc, port: third.port, role: "remote") == nil,
                "\(String(describing: doc))")
    }

    /// Defect 9: a port held only by TIME_WAIT is free, with the caveat and the count, and
    /// `time_wait` agrees with `connections.time_wait`.
    @Test func timeWaitOnlyPortIsFreeWithACaveat() throws {
        let listener = try Net.tcpListenerOnFreePort("127.0.0.1", backlog: 4)
        let port = listener.port
        let client = try Net.connect("127.0.0.1", port: port)
        defer { client.close() }
        let server = try Net.accept(listener)
        server.close()  // the server closes first: its side lingers in TIME_WAIT
        #expect(client.waitForEOF(timeout: 5))
        client.close()
        listener.close()

        var doc: [String: Any]? = nil
        poll(timeout: 3, interval: 0.1) {
            doc = jsonOf(runPortwatch(["check", "\(port)", "--json"]))
            return doc?.int("time_wait") ?? 0 >= 1
        }
        #expect(doc?.string("verdict") == "free", "\(String(describing: doc))")
        #expect((doc?.int("time_wait") ?? 0) >= 1, "\(String(describing: doc))")
        #expect(doc?.int("time_wait") == doc?.object("connections")?.int("time_wait"), "\(String(describing: doc))")
        #expect(doc?.strings("caveats")?.first?.contains("TIME_WAIT") == true, "\(String(describing: doc))")
        let text = runPortwatch(["check", "\(port)"])
        #expect(text.status == 0 && text.stdout.contains("TIME_WAIT") && text.stdout.contains("SO_REUSEADDR"), "\(text)")
    }

    /// Defect 14: a v6only `[::]` listener is no wildcard for IPv4: an IPv4 client using the
    /// same port number is not its connection (TCP), nor is a connected IPv4 UDP socket.
    @Test func v6onlyWildcardServesIPv6Only() throws {
        let (v6, other, client) = try Net.onFreePorts(2) { p -> (TestSocket, TestSocket, TestSocket) in
            let v6 = try Net.tcpListener("::", port: p[0], backlog: 4)  // IPV6_V6ONLY set
            let o = try Net.tcpListener("127.0.0.1", port: p[1], backlog: 4)
            return (v6, o, try Net.connect("127.0.0.1", port: p[1], from: ("127.0.0.1", p[0])))
        }
        defer { v6.close(); other.close(); client.close() }
        let check = jsonOf(runPortwatch(["check", "\(v6.port)", "--json"]))
        #expect(check?.string("verdict") == "listening", "\(String(describing: check))")
        #expect(check?.object("connections")?.int("established") == 0, "\(String(describing: check))")

        let (udp6, udpOther, udp4) = try Net.onFreePorts(2, udp: true) { p -> (TestSocket, TestSocket, TestSocket) in
            (try Net.udpSocket("::", port: p[0]), try Net.udpSocket("127.0.0.1", port: p[1]),
             try Net.udpSocket("127.0.0.1", port: p[0]))
        }
        defer { udp6.close(); udpOther.close(); udp4.close() }
        try connectUDP(udp4, to: udpOther.port)
        let udpCheck = jsonOf(runPortwatch(["check", "\(udp6.port)/udp", "--json"]))
        #expect(udpCheck?.string("verdict") == "listening", "\(String(describing: udpCheck))")
        #expect(udpCheck?.object("connections")?.int("total") == 0, "\(String(describing: udpCheck))")
    }

    /// Defect 17: a TCP socket explicitly bound, connected, then reset stays in CLOSE holding
    /// its port: it is shown there, as bind() sees it, and is no connection of the remote port.
    @Test func resetBoundSocketHoldsItsPort() throws {
        let (listener, client) = try Net.onFreePorts(2) { p -> (TestSocket, TestSocket) in
            let l = try Net.tcpListener("127.0.0.1", port: p[0], backlog: 4)
            return (l, try Net.connect("127.0.0.1", port: p[0], from: ("127.0.0.1", p[1])))
        }
        defer { listener.close(); client.close() }
        let server = try Net.accept(listener)
        lingerZero(server)
        server.close()  // a reset: the client's socket goes to CLOSE, still bound
        var buffer = [UInt8](repeating: 0, count: 16)
        var pfd = pollfd(fd: client.fd, events: Int16(POLLIN), revents: 0)
        _ = Glibc.poll(&pfd, 1, 5000)
        #expect(recv(client.fd, &buffer, buffer.count, Int32(MSG_DONTWAIT)) == -1 && errno == ECONNRESET)

        let ports = runPortwatch(["ports", "\(client.port)", "--json"])
        let held = row(jsonOf(ports), port: client.port)
        #expect(ports.status == 0 && held?.int("bound_sockets") == 1, "\(ports)")
        let check = jsonOf(runPortwatch(["check", "\(client.port)", "--json"]))
        #expect(check?.string("verdict") == "busy" && check?.int("bound_sockets") == 1, "\(String(describing: check))")
        let all = jsonOf(runPortwatch(["ports", "--all", "--json"]))
        #expect((row(all, port: listener.port, role: "remote")?.object("connections")?.int("other") ?? 0) == 0,
                "\(String(describing: row(all, port: listener.port, role: "remote")))")
    }

    /// Defect 8: `overloaded` says why, in text and JSON; a window adds the system's errors.
    @Test func overloadedSaysWhy() throws {
        let listener = try Net.tcpListenerOnFreePort("127.0.0.1", backlog: 1)
        defer { listener.close() }
        // Nobody accepts: two handshakes complete into a queue whose limit is 1.
        let clients = try (0..<3).map { _ in try Net.connect("127.0.0.1", port: listener.port, nonBlocking: true) }
        defer { clients.forEach { $0.close() } }
        var doc: [String: Any]? = nil
        poll(timeout: 3, interval: 0.1) {
            doc = jsonOf(runPortwatch(["check", "\(listener.port)", "--json"]))
            return doc?.string("verdict") == "overloaded"
        }
        let reason = doc?.objects("reasons").first { $0.string("reason") == "accept_queue_full" }
        #expect(reason?.int("count") == 2 && reason?.int("limit") == 1, "\(String(describing: doc))")
        let text = runPortwatch(["check", "\(listener.port)"])
        #expect(text.stdout.contains("overloaded") && text.stdout.contains("accept queue full (2/1)"), "\(text)")
        let table = runPortwatch(["ports", "\(listener.port)"])
        #expect(table.stdout.contains("tcp/\(listener.port) overloaded: accept queue full (2/1)"), "\(table)")
        let row = jsonOf(runPortwatch(["ports", "\(listener.port)", "--json"]))?.objects("ports").first
        #expect(row?.objects("reasons").first?.string("reason") == "accept_queue_full", "\(String(describing: row))")
        let sampled = jsonOf(runPortwatch(["check", "\(listener.port)", "--sample", "200ms", "--json"]))
        #expect(sampled?.object("system_errors")?["syncookies_sent"] != nil, "\(String(describing: sampled))")
    }
}

@Suite("overloaded by a SYN flood, in a namespace of its own", .blocking,
       .enabled(if: TestEnv.canCreateNamespaces, "needs root, ip, nft and python3 for a namespace"))
struct SynFloodTests {
    /// A listener (backlog 2) whose SYN-ACKs nft drops, flooded with connects: its SYN queue
    /// sits at the backlog and the kernel sends SYN cookies. `check`, `ports --sample` and
    /// their JSON say so, with counts; the table's ERRORS and system line show the cookies.
    @Test func synBacklogAndSyncookiesAreReasons() throws {
        let lab = try NetnsLab()
        defer { lab.destroy() }
        let ns = lab.server
        let port: UInt16 = 8080  // inside a namespace nothing else uses
        try lab.nft(ns, """
            table inet pw {
              chain out { type filter hook output priority 0; tcp sport \(port) tcp flags & (syn | ack) == (syn | ack) drop; }
            }
            """)
        // Bounded: at most 400 connects, 12 s; the child also ends when the test closes its stdin.
        let script = """
            import socket, sys, time, select
            l = socket.socket(); l.bind(("127.0.0.1", \(port))); l.listen(2)
            print("ready", flush=True)
            socks, end = [], time.time() + 12
            while time.time() < end and len(socks) < 400:
                c = socket.socket(); c.setblocking(False)
                try: c.connect(("127.0.0.1", \(port)))
                except BlockingIOError: pass
                socks.append(c)
                if select.select([sys.stdin], [], [], 0.03)[0]: break
            """
        let flood = try Child.spawn(TestEnv.ip!, ["netns", "exec", ns, TestEnv.python3!, "-c", script], stdin: .pipe)
        defer { flood.closeStdin(); flood.kill() }
        #expect(flood.readLine(timeout: 10) == "ready")

        var doc: [String: Any]? = nil
        poll(timeout: 8, interval: 0.1) {
            doc = jsonOf(runPortwatch(["check", "\(port)", "--sample", "500ms", "--json"], netns: ns))
            let reasons = doc?.objects("reasons").compactMap { $0.string("reason") } ?? []
            return reasons.contains("syn_backlog_full") && reasons.contains("syncookies_sent")
        }
        #expect(doc?.string("verdict") == "overloaded", "\(String(describing: doc))")
        let backlog = doc?.objects("reasons").first { $0.string("reason") == "syn_backlog_full" }
        #expect(backlog?.int("limit") == 2 && (backlog?.int("count") ?? 0) >= 2, "\(String(describing: doc))")
        #expect((doc?.object("system_errors")?.int("syncookies_sent") ?? 0) > 0, "\(String(describing: doc))")

        var table: PortwatchResult? = nil
        poll(timeout: 8, interval: 0.1) {
            table = runPortwatch(["ports", "\(port)", "--sample", "500ms"], netns: ns)
            return table?.stdout.contains("syncookies_sent") == true
        }
        let text = table?.stdout ?? ""
        #expect(text.contains("overloaded") && text.contains("system: ") && text.contains("syncookies_sent"), "\(String(describing: table))")
        let line = text.split(separator: "\n").first { $0.contains(" \(port) ") } ?? ""
        let errorsCell = line.split(separator: " ").dropLast().last.flatMap { Int($0) }
        #expect((errorsCell ?? 0) > 0, "ERRORS of \(line)")
    }
}

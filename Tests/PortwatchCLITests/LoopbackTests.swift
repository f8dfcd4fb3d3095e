// The built `portwatch` binary against real sockets on loopback, with exact assertions on --json.
//
// Every test takes its own ports from `portwatch free` (outside the ephemeral range: on a busy
// host a kernel-picked port number is often also in use on 127.0.0.2 or 127.0.0.3 by someone's
// client socket, and portwatch counts per port number), so the tests run in parallel with each
// other and with whatever else the machine does; every socket is closed and every child reaped
// by `defer`.

import Foundation
import Testing
import PortwatchTestSupport
#if canImport(Glibc)
import Glibc
#endif

// MARK: - Helpers for this file

/// `ports SPEC --json`: the whole document and the row for (protocol, port), polled until
/// `until` holds for the row (or `timeout` passes; the last row is returned either way).
private func portRow(_ spec: String, proto: String = "tcp", port: UInt16, environment: [String: String] = [:],
                     timeout: Double = 2, runTimeout: Double = 15, until: ([String: Any]) -> Bool = { _ in true },
                     sourceLocation: SourceLocation = #_sourceLocation) -> (row: [String: Any]?, doc: [String: Any]?, result: PortwatchResult) {
    var last: (row: [String: Any]?, doc: [String: Any]?, result: PortwatchResult)? = nil
    poll(timeout: timeout, interval: 0.1) {
        let r = runPortwatch(["ports", spec, "--json"], timeout: runTimeout, environment: environment)
        let data = r.stdout.data(using: .utf8) ?? Data()
        let doc = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any]
        let row = doc?.objects("ports").first { $0.string("protocol") == proto && $0.int("port") == Int(port) }
        last = (row, doc, r)
        guard r.status == 0, let row else { return false }
        return until(row)
    }
    let result = last!
    #expect(result.result.status == 0, "ports \(spec) --json: \(result.result)", sourceLocation: sourceLocation)
    #expect(result.row != nil, "no \(proto)/\(port) row in \(result.result)", sourceLocation: sourceLocation)
    return result
}

/// `check ARGS --json` parsed, polled until `until` holds (or `timeout` passes).
private func checkJSON(_ arguments: [String], environment: [String: String] = [:], timeout: Double = 2,
                       runTimeout: Double = 15, until: ([String: Any]) -> Bool = { _ in true }) -> (json: [String: Any]?, result: PortwatchResult) {
    var last: (json: [String: Any]?, result: PortwatchResult)? = nil
    poll(timeout: timeout, interval: 0.1) {
        let r = runPortwatch(["check"] + arguments + ["--json"], timeout: runTimeout, environment: environment)
        let data = r.stdout.data(using: .utf8) ?? Data()
        let json = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any]
        last = (json, r)
        guard let json else { return false }
        return until(json)
    }
    return last!
}

/// One port `portwatch free` says is free (outside the ephemeral range, so no client takes it).
private func portFromFree(sourceLocation: SourceLocation = #_sourceLocation) throws -> UInt16 {
    let r = runPortwatch(["free", "--json"])
    let ports = r.json(sourceLocation: sourceLocation)?["ports"] as? [Any]
    guard r.status == 0, let first = (ports?.first as? NSNumber)?.intValue, let port = UInt16(exactly: first) else {
        throw SupportError("portwatch free --json: \(r)")
    }
    return port
}

private func expectOneErrorLine(_ r: PortwatchResult, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(r.status == 2, "\(r.arguments): \(r)", sourceLocation: sourceLocation)
    #expect(r.stderrLines.count == 1, "\(r.arguments): stderr must be one line: \(r)", sourceLocation: sourceLocation)
    #expect(r.stderr.hasPrefix("portwatch: "), "\(r.arguments): \(r)", sourceLocation: sourceLocation)
    #expect(r.stderr.hasSuffix("\n"), "\(r.arguments): \(r)", sourceLocation: sourceLocation)
    for bad in ["Fatal error", "Stack dump", "Backtrace", "Usage:", "USAGE:"] {
        #expect(!r.stderr.contains(bad) && !r.stdout.contains(bad), "\(r.arguments): \(r)", sourceLocation: sourceLocation)
    }
}

// MARK: - Local ports

@Suite("loopback: real sockets, exact JSON", .blocking)
struct LoopbackTests {
    /// A listener with backlog 7 and exactly three established connections, first waiting in the
    /// accept queue, then accepted.
    @Test func tcpListenerWithThreeConnections() throws {
        let backlog: Int32 = 7
        let listener = try Net.tcpListenerOnFreePort("127.0.0.1", backlog: backlog)
        defer { listener.close() }
        let port = listener.port
        var clients: [TestSocket] = []
        defer { clients.forEach { $0.close() } }
        for _ in 0..<3 { clients.append(try Net.connect("127.0.0.1", port: port)) }

        // Not accepted yet: three connections in the accept queue.
        let queued = portRow("\(port)", port: port) {
            $0.object("connections")?.int("established") == 3 && $0.object("accept_queue")?.int("current") == 3
        }
        if let row = queued.row {
            #expect(row.bool("listening") == true)
            #expect(row.strings("addresses") == ["127.0.0.1"])
            #expect(row.object("connections")?.int("established") == 3)
            #expect(row.object("connections")?.int("total") == 3)
            #expect(row.object("connections")?.int("syn_recv") == 0)
            #expect(row.object("accept_queue")?.int("current") == 3)
            #expect(row.object("accept_queue")?.int("max") == Int(backlog))
            #expect(row.bool("overloaded") == false)
            let me = row.objects("processes").first { $0.int("pid") == Int(getpid()) }
            #expect(me != nil, "this test process (\(getpid())) must hold the port: \(queued.result)")
            #expect(me?.string("name") == TestEnv.ownComm)
            #expect(row.objects("listeners").count == 1)
            #expect(row.objects("listeners").first?.int("backlog") == Int(backlog))
        }
        #expect(queued.doc?.string("source") == "sock_diag")
        // Client sockets (local port ephemeral, peer port = PORT) are not rows of this port.
        #expect(queued.doc?.objects("ports").filter { $0.string("protocol") == "tcp" }.count == 1)

        var accepted: [TestSocket] = []
        defer { accepted.forEach { $0.close() } }
        for _ in 0..<3 { accepted.append(try Net.accept(listener)) }

        let served = portRow("\(port)", port: port) { $0.object("accept_queue")?.int("current") == 0 }
        #expect(served.row?.object("connections")?.int("established") == 3)
        #expect(served.row?.object("accept_queue")?.int("current") == 0)
        #expect(served.row?.object("accept_queue")?.int("max") == Int(backlog))
        #expect(served.row?.pids().contains(getpid()) == true)

        let check = checkJSON(["\(port)"])
        #expect(check.json?.string("verdict") == "busy", "\(check.result)")
        #expect(check.json?.string("expected") == "free")
        #expect(check.json?.bool("matched") == false)
        #expect(check.json?.string("protocol") == "tcp")
        #expect(check.json?.int("port") == Int(port))
        #expect(check.json?["host"] is NSNull)
        #expect(check.json?.object("connections")?.int("established") == 3)
        #expect(check.json?.pids().contains(getpid()) == true)
        #expect(check.result.status == 1, "default expectation is free: \(check.result)")

        #expect(runPortwatch(["check", "\(port)"]).status == 1)
        let busy = runPortwatch(["check", "\(port)", "--expect", "busy"])
        #expect(busy.status == 0, "\(busy)")
        let listening = runPortwatch(["check", "\(port)", "--expect", "listening"])
        #expect(listening.status == 0, "\(listening)")
        let overloaded = runPortwatch(["check", "\(port)", "--expect", "overloaded"])
        #expect(overloaded.status == 1, "\(overloaded)")
        let free = runPortwatch(["check", "\(port)", "--expect", "free"])
        #expect(free.status == 1, "\(free)")
    }

    /// An idle listener on ::1 only.
    @Test func idleIPv6Listener() throws {
        let listener = try Net.tcpListenerOnFreePort("::1", backlog: 5)
        defer { listener.close() }
        let port = listener.port

        let check = checkJSON(["\(port)"])
        #expect(check.json?.string("verdict") == "listening", "\(check.result)")
        #expect(check.json?.strings("addresses") == ["::1"])
        #expect(check.json?.bool("listening") == true)
        #expect(check.json?.object("connections")?.int("total") == 0)
        #expect(check.result.status == 1)
        #expect(runPortwatch(["check", "\(port)", "--expect", "listening"]).status == 0)
        #expect(runPortwatch(["check", "\(port)", "--expect", "busy"]).status == 1)

        let row = portRow("\(port)", port: port).row
        #expect(row?.strings("addresses") == ["::1"])
        #expect(row?.object("accept_queue")?.int("max") == 5)
        #expect(row?.pids().contains(getpid()) == true)
        // -4 hides it, -6 shows it.
        let v4 = runPortwatch(["ports", "\(port)", "-4", "--json"])
        #expect(v4.json()?.objects("ports").contains { $0.int("port") == Int(port) } == false, "\(v4)")
        let v6 = runPortwatch(["ports", "\(port)", "-6", "--json"])
        #expect(v6.json()?.objects("ports").contains { $0.int("port") == Int(port) } == true, "\(v6)")
    }

    /// UDP sockets bound on 127.0.0.1 and ::1, same port.
    @Test func udpBoundSockets() throws {
        let (v4, v6) = try Net.udpPair()
        defer { v4.close(); v6.close() }
        let port = v4.port

        let ports = portRow("\(port)/udp", proto: "udp", port: port)
        if let row = ports.row {
            #expect(row.string("protocol") == "udp")
            #expect(row.bool("listening") == true)
            #expect(Set(row.strings("addresses") ?? []) == ["127.0.0.1", "::1"])
            #expect(row.strings("addresses")?.count == 2)
            #expect(row["accept_queue"] is NSNull)
            #expect(row.objects("listeners").count == 2)
            #expect(row.pids().contains(getpid()))
        }
        // The /udp suffix keeps TCP out.
        #expect(ports.doc?.objects("ports").allSatisfy { $0.string("protocol") == "udp" } == true)

        let check = checkJSON(["\(port)/udp"])
        #expect(check.json?.string("verdict") == "listening", "\(check.result)")
        #expect(check.json?.string("protocol") == "udp")
        #expect(Set(check.json?.strings("addresses") ?? []) == ["127.0.0.1", "::1"])
        #expect(check.result.status == 1)
        #expect(runPortwatch(["check", "\(port)/udp", "--expect", "listening"]).status == 0)
        // --udp means the same as the suffix.
        let flag = runPortwatch(["check", "\(port)", "--udp", "--expect", "listening"])
        #expect(flag.status == 0, "\(flag)")
    }

    /// Backlog 1, never accepted, eight connects: the queue overflows, the kernel drops.
    @Test func overloadedListenerAndDrops() throws {
        let listener = try Net.tcpListenerOnFreePort("127.0.0.1", backlog: 1)
        defer { listener.close() }
        let port = listener.port
        var clients: [TestSocket] = []
        defer { clients.forEach { $0.close() } }
        for _ in 0..<8 { clients.append(try Net.connect("127.0.0.1", port: port, nonBlocking: true)) }

        // The kernel's rule (sk_acceptq_is_full): full when the queue exceeds the backlog, so a
        // backlog of 1 holds 2 connections and refuses the rest.
        let check = checkJSON(["\(port)"]) {
            $0.string("verdict") == "overloaded" && $0.object("accept_queue")?.int("current") == 2
        }
        #expect(check.json?.string("verdict") == "overloaded", "\(check.result)")
        let current = check.json?.object("accept_queue")?.int("current") ?? -1
        let max = check.json?.object("accept_queue")?.int("max") ?? -1
        #expect(max == 1)
        #expect(current == 2)
        #expect(current > max)
        #expect(check.result.status == 1)
        #expect(runPortwatch(["check", "\(port)", "--expect", "overloaded"]).status == 0)
        #expect(runPortwatch(["check", "\(port)", "--expect", "busy"]).status == 0)
        #expect(runPortwatch(["check", "\(port)", "--expect", "listening"]).status == 0)

        // More connects than the queue holds: SYNs (and late ACKs) are dropped and counted.
        let row = portRow("\(port)", port: port, timeout: 2) {
            ($0.objects("listeners").first?.int("drops") ?? 0) > 0
        }.row
        let drops = row?.objects("listeners").first?.int("drops") ?? 0
        #expect(drops > 0, "listener drops after 8 connects on backlog 1: \(String(describing: row))")
        #expect((row?.int("drops") ?? 0) >= drops)
        #expect(row?.bool("overloaded") == true)
    }

    /// Two processes listening on one port with SO_REUSEPORT.
    @Test(.enabled(if: TestEnv.hasPython, "needs python3 for the listener processes"))
    func reusePortListenersInTwoProcesses() throws {
        let (first, second) = try Net.onFreePorts { ports in
            let a = try PythonServer.start(["tcp-reuseport:127.0.0.1:\(ports[0])"])
            do {
                return (a, try PythonServer.start(["tcp-reuseport:127.0.0.1:\(ports[0])"]))
            } catch {
                a.stop()
                throw error
            }
        }
        defer { first.stop(); second.stop() }
        let port = first.ports[0]
        #expect(second.ports == [port])
        let both: Set<Int32> = [first.pid, second.pid]

        let row = portRow("\(port)", port: port) { Set($0.pids()) == both }.row
        #expect(row?.objects("listeners").count == 2)
        #expect(Set(row?.pids() ?? []) == both)
        #expect(row?.pids().count == 2)
        #expect(row?.strings("addresses") == ["127.0.0.1"])
        #expect(row?.objects("processes").allSatisfy { ($0.string("name") ?? "").hasPrefix("python") } == true)

        let who = runPortwatch(["who", "\(port)", "--json"])
        #expect(who.status == 0, "\(who)")
        let json = who.json()
        #expect(json?.int("port") == Int(port))
        #expect(json?.string("protocol") == "tcp")
        #expect(Set(json?.pids() ?? []) == both, "\(who)")
        #expect(json?.pids().count == 2)
        let text = runPortwatch(["who", "\(port)"])
        #expect(text.status == 0)
        #expect(text.stdout.contains(String(first.pid)) && text.stdout.contains(String(second.pid)), "\(text)")
    }

    /// A port that was bound and closed: free, and nobody holds it.
    @Test func freePort() throws {
        let port = try Net.closedPort()
        let check = checkJSON(["\(port)"])
        #expect(check.json?.string("verdict") == "free", "\(check.result)")
        #expect(check.json?.bool("matched") == true)
        #expect(check.json?.bool("listening") == false)
        #expect(check.json?["accept_queue"] is NSNull)
        #expect(check.result.status == 0)
        #expect(runPortwatch(["check", "\(port)"]).status == 0)
        #expect(runPortwatch(["check", "\(port)", "--expect", "listening"]).status == 1)

        let who = runPortwatch(["who", "\(port)"])
        #expect(who.status == 1, "\(who)")
        let whoJSON = runPortwatch(["who", "\(port)", "--json"])
        #expect(whoJSON.status == 1)
        #expect(whoJSON.json()?.objects("processes").isEmpty == true, "\(whoJSON)")
        let ports = runPortwatch(["ports", "\(port)", "--json"])
        #expect(ports.status == 1, "nothing found is a definite no: \(ports)")
        #expect(ports.json()?.objects("ports").isEmpty == true)
    }

    /// Two connections, 5000 bytes sent on each: both sides of both, with byte counts.
    @Test func connectionsWithBytes() throws {
        let listener = try Net.tcpListenerOnFreePort("127.0.0.1", backlog: 8)
        defer { listener.close() }
        let port = listener.port
        var clients: [TestSocket] = []
        var servers: [TestSocket] = []
        defer { (clients + servers).forEach { $0.close() } }
        let payload = [UInt8](repeating: 0x5a, count: 5000)
        for _ in 0..<2 {
            let c = try Net.connect("127.0.0.1", port: port)
            clients.append(c)
            servers.append(try Net.accept(listener))
        }
        for c in clients { try c.sendAll(payload) }
        for s in servers { #expect(s.read(count: 5000, timeout: 5) == 5000) }
        let clientPorts = Set(clients.map(\.port))

        var entries: [[String: Any]] = []
        var result: PortwatchResult? = nil
        poll(timeout: 2, interval: 0.1) {
            let r = runPortwatch(["connections", "\(port)", "--json"])
            result = r
            entries = r.json()?.objects("connections") ?? []
            // The client's byte count is what the server acknowledged; let the ACKs land.
            return entries.count == 4 && entries.allSatisfy {
                $0.object("peer")?.int("port") != Int(port) || $0.object("bytes")?.int("sent") == 5000
            }
        }
        #expect(result?.status == 0, "\(String(describing: result))")
        #expect(entries.count == 4, "\(String(describing: result))")
        let serverSide = entries.filter { $0.object("local")?.int("port") == Int(port) }
        let clientSide = entries.filter { $0.object("peer")?.int("port") == Int(port) }
        #expect(serverSide.count == 2)
        #expect(clientSide.count == 2)
        #expect(entries.allSatisfy { $0.string("state") == "established" && $0.string("protocol") == "tcp" })
        #expect(Set(serverSide.compactMap { $0.object("peer")?.int("port").flatMap(UInt16.init(exactly:)) }) == clientPorts)
        #expect(Set(clientSide.compactMap { $0.object("local")?.int("port").flatMap(UInt16.init(exactly:)) }) == clientPorts)
        for e in serverSide {
            #expect(e.object("bytes")?.int("received") == 5000, "\(e)")
            #expect(e.object("bytes")?.int("sent") == 0, "\(e)")
            #expect(e.object("local")?.string("address") == "127.0.0.1")
        }
        for e in clientSide {
            #expect(e.object("bytes")?.int("sent") == 5000, "\(e)")
            #expect(e.object("bytes")?.int("received") == 0, "\(e)")
        }
        // The listener itself is not a connection.
        #expect(!entries.contains { $0.string("state") == "listen" })

        // A state filter that matches nothing is a definite no.
        let none = runPortwatch(["connections", "\(port)", "--state", "close-wait", "--json"])
        #expect(none.status == 1, "\(none)")
        #expect(none.json()?.objects("connections").isEmpty == true)
    }

    /// The server closes first, so its side lingers in TIME_WAIT.
    @Test func timeWaitAfterServerCloses() throws {
        let listener = try Net.tcpListenerOnFreePort("127.0.0.1", backlog: 8)
        defer { listener.close() }
        let port = listener.port
        let client = try Net.connect("127.0.0.1", port: port)
        defer { client.close() }
        let server = try Net.accept(listener)
        server.close()
        #expect(client.waitForEOF(timeout: 5))
        let clientPort = client.port
        client.close()

        var entry: [String: Any]? = nil
        var last: PortwatchResult? = nil
        poll(timeout: 2, interval: 0.1) {
            let r = runPortwatch(["connections", "\(port)", "--state", "time-wait", "--json"])
            last = r
            entry = r.json()?.objects("connections").first {
                $0.object("local")?.int("port") == Int(port) && $0.object("peer")?.int("port") == Int(clientPort)
            }
            return entry != nil
        }
        #expect(last?.status == 0, "\(String(describing: last))")
        #expect(entry?.string("state") == "time_wait", "\(String(describing: last))")
        #expect(last?.json()?.objects("connections").allSatisfy { $0.string("state") == "time_wait" } == true)

        // With the listener gone, TIME_WAIT alone leaves the port free (SO_REUSEADDR binds succeed).
        listener.close()
        let check = checkJSON(["\(port)"])
        #expect(check.json?.string("verdict") == "free", "\(check.result)")
        #expect(check.json?.int("time_wait") == 1, "\(check.result)")
        #expect(check.result.status == 0)
    }

    /// `free --count 3`: three distinct ports, each really bindable.
    @Test func freeCountThree() throws {
        let r = runPortwatch(["free", "--count", "3", "--json"])
        #expect(r.status == 0, "\(r)")
        let ports = (r.json()?["ports"] as? [Any])?.compactMap { ($0 as? NSNumber)?.intValue } ?? []
        #expect(ports.count == 3, "\(r)")
        #expect(Set(ports).count == 3)
        #expect(r.json()?.string("protocol") == "tcp")
        for p in ports {
            guard let port = UInt16(exactly: p), port >= 1 else {
                Issue.record("not a port: \(p)")
                continue
            }
            let v4 = try Net.tcpListener("0.0.0.0", port: port, backlog: 1)
            let v6 = try Net.tcpListener("::", port: port, backlog: 1)
            v4.close(); v6.close()
        }
        let udp = runPortwatch(["free", "--count", "2", "--udp", "--json"])
        #expect(udp.status == 0, "\(udp)")
        #expect(udp.json()?.string("protocol") == "udp")
        for p in (udp.json()?["ports"] as? [Any])?.compactMap({ ($0 as? NSNumber)?.intValue }) ?? [] {
            let s = try Net.udpSocket("0.0.0.0", port: UInt16(p))
            s.close()
        }
    }

    /// `wait --until listening` returns once a listener appears; on a free port it times out.
    @Test func waitUntilListening() throws {
        let port = try portFromFree()
        // Nothing listens yet: `wait` cannot have succeeded; if it has already ended, it was wrong.
        let run = try startPortwatch(["wait", "\(port)", "--until", "listening", "--timeout", "30s", "--json"])
        #expect(!run.child.reap(), "wait ended before anything listened on \(port)")
        let listener = try Net.tcpListener("127.0.0.1", port: port, backlog: 4)
        defer { listener.close() }
        // Its own timeout is far away: exit 0 with `reached` means it saw the listener.
        let r = run.finish(timeout: 40)
        #expect(r.status == 0, "\(r)")
        #expect(r.json()?.bool("reached") == true, "\(r)")

        // And `--until free` once it goes away.
        let freeRun = try startPortwatch(["wait", "\(port)", "--until", "free", "--timeout", "30s", "--json"])
        #expect(!freeRun.child.reap(), "wait --until free ended while \(port) was still held")
        listener.close()
        let f = freeRun.finish(timeout: 40)
        #expect(f.status == 0, "\(f)")
        #expect(f.json()?.bool("reached") == true)
    }

    @Test func waitTimesOut() throws {
        let port = try Net.closedPort()
        let r = runPortwatch(["wait", "\(port)", "--until", "listening", "--timeout", "500ms", "--json"])
        #expect(r.status == 1, "\(r)")
        // It waited out its timeout before saying no (a lower bound only: load can only add time).
        #expect(r.seconds >= 0.5, "\(r)")
        #expect(r.json()?.bool("reached") == false)
    }

    /// `kill` refuses without --yes when it cannot ask; with --yes the listener's process gets SIGTERM.
    @Test(.enabled(if: TestEnv.hasPython, "needs python3 for the process to kill"))
    func killListener() throws {
        let server = try Net.onFreePorts { try PythonServer.start(["tcp:127.0.0.1:\($0[0])"]) }
        defer { server.stop() }
        let port = server.ports[0]

        let refused = runPortwatch(["kill", "\(port)"])
        expectOneErrorLine(refused)
        #expect(server.child.wait(timeout: 0.2) == nil, "the child must still run after a refused kill")

        let r = runPortwatch(["kill", "\(port)", "--yes", "--json"])
        #expect(r.status == 0, "\(r)")
        let signalled = r.json()?.objects("signalled") ?? []
        #expect(signalled.compactMap { $0.int("pid") } == [Int(server.pid)], "\(r)")
        #expect(r.json()?.string("signal") == "TERM")
        let status = server.child.wait(timeout: 5)
        #expect(status != nil, "the child did not exit after kill --yes")
        #expect(exitCode(status) == 128 + SIGTERM, "wait status \(String(describing: status))")

        // Nothing left to kill: a definite no.
        let again = runPortwatch(["kill", "\(port)", "--yes"])
        #expect(again.status == 1, "\(again)")
    }

    /// Remote checks (`--host`) against loopback: open, closed, per address family, names.
    @Test func remoteChecksOnLoopback() throws {
        let listener = try Net.tcpListenerOnFreePort("127.0.0.1", backlog: 64)
        defer { listener.close() }
        let port = listener.port
        let closed = try Net.closedPort()

        let open = runPortwatch(["check", "\(port)", "--host", "127.0.0.1", "--json"])
        #expect(open.status == 0, "\(open)")
        #expect(open.json()?.string("verdict") == "open")
        #expect(open.json()?.string("host") == "127.0.0.1")
        #expect(open.json()?.string("address") == "127.0.0.1")
        #expect(open.json()?.bool("matched") == true)

        let refused = runPortwatch(["check", "\(closed)", "--host", "127.0.0.1", "--json"])
        #expect(refused.status == 1, "\(refused)")
        #expect(refused.json()?.string("verdict") == "closed")
        #expect(runPortwatch(["check", "\(closed)", "--host", "127.0.0.1", "--expect", "closed"]).status == 0)

        // The listener is IPv4 only: ::1 refuses, in either spelling.
        for host in ["::1", "[::1]"] {
            let v6 = runPortwatch(["check", "\(port)", "--host", host, "--json"])
            #expect(v6.status == 1, "\(host): \(v6)")
            #expect(v6.json()?.string("verdict") == "closed", "\(host): \(v6)")
            #expect(v6.json()?.string("host") == "::1", "\(host): \(v6)")
        }

        let wait = runPortwatch(["wait", "\(port)", "--host", "127.0.0.1", "--until", "open", "--timeout", "2s"])
        #expect(wait.status == 0, "\(wait)")
        let waitClosed = runPortwatch(["wait", "\(closed)", "--host", "127.0.0.1", "--until", "closed", "--timeout", "2s"])
        #expect(waitClosed.status == 0, "\(waitClosed)")

        // A zero timeout cannot answer the question: it must be refused (exit 2), not reported
        // as "filtered" for a port that is open.
        let zero = runPortwatch(["check", "\(port)", "--host", "127.0.0.1", "--timeout", "0s", "--json"])
        expectOneErrorLine(zero)
    }

    @Test(.enabled(if: TestEnv.hasPython, "needs python3 for the UDP echo"))
    func remoteUDPOnLoopback() throws {
        let echo = try Net.onFreePorts(udp: true) { try PythonServer.start(["udp-echo:127.0.0.1:\($0[0])"]) }
        defer { echo.stop() }
        let port = echo.ports[0]
        let open = runPortwatch(["check", "\(port)/udp", "--host", "127.0.0.1", "--json"])
        #expect(open.status == 0, "\(open)")
        #expect(open.json()?.string("verdict") == "open")
        #expect(open.json()?.string("protocol") == "udp")
        let closedPort = try Net.onFreePorts(udp: true) { $0[0] }
        let closed = runPortwatch(["check", "\(closedPort)/udp", "--host", "127.0.0.1", "--json"])
        #expect(closed.status == 1, "\(closed)")
        #expect(closed.json()?.string("verdict") == "closed")
    }

    /// The /proc/net fallback sees the same listener and connections.
    @Test func procfsFallback() throws {
        let listener = try Net.tcpListenerOnFreePort("127.0.0.1", backlog: 16)
        defer { listener.close() }
        let port = listener.port
        var clients: [TestSocket] = []
        defer { clients.forEach { $0.close() } }
        for _ in 0..<3 { clients.append(try Net.connect("127.0.0.1", port: port)) }
        let procfs = ["PORTWATCH_SOCKET_SOURCE": "procfs"]

        // /proc/net/tcp is text, parsed line by line: on a host with 100k sockets a debug build
        // takes seconds, so these runs get a longer leash and are kept few.
        let ports = portRow("\(port)", port: port, environment: procfs, runTimeout: 60) {
            $0.object("connections")?.int("established") == 3
        }
        #expect(ports.doc?.string("source") == "procfs")
        #expect(ports.row?.bool("listening") == true)
        #expect(ports.row?.strings("addresses") == ["127.0.0.1"])
        #expect(ports.row?.object("connections")?.int("established") == 3)
        #expect(ports.row?.object("accept_queue")?.int("current") == 3)
        #expect(ports.row?.pids().contains(getpid()) == true)
        #expect((ports.doc?.strings("notes") ?? []).contains { $0.contains("sock_diag") })

        let sockDiag = checkJSON(["\(port)"])
        #expect(sockDiag.json?.string("verdict") == "busy", "sock_diag: \(sockDiag.result)")
        let check = checkJSON(["\(port)"], environment: procfs, timeout: 0, runTimeout: 60)
        #expect(check.json?.object("connections")?.int("established") == 3, "\(check.result)")
        #expect(check.json?.bool("listening") == true)
        // Three connections waiting in a queue of 16 are busy, not overloaded, whatever the source:
        // /proc/net/tcp has no backlog for listeners, so the limit is unknown (null), never 0.
        #expect(check.json?.string("verdict") == "busy", "procfs: \(check.result)")
        #expect(ports.row?.bool("overloaded") == false, "procfs: \(ports.result)")
        #expect(ports.row?.object("accept_queue")?["max"] is NSNull, "procfs: \(ports.result)")
    }

    /// A TCP socket that is bound but neither listens nor connects holds its port (a bind fails)
    /// but has no connections.
    @Test func boundButNotListening() throws {
        let socket = try Net.onFreePorts { try Net.tcpBound("127.0.0.1", port: $0[0]) }
        defer { socket.close() }
        let port = socket.port

        let check = checkJSON(["\(port)"])
        let verdict = check.json?.string("verdict")
        #expect(verdict != nil, "\(check.result)")
        // A bind to this port fails, so it is busy (held), and the JSON says why: a bound
        // socket, not a phantom connection.
        #expect(verdict == "busy", "\(check.result)")
        #expect(check.json?.int("bound_sockets") == 1, "\(check.result)")
        #expect(check.json?.object("connections")?.int("total") == 0, "\(check.result)")
        let who = runPortwatch(["who", "\(port)", "--json"])
        #expect(who.status == 0 && who.json()?.pids().contains(getpid()) == true,
                "check says the port is held, so who must name the holder: \(who)")
    }

    /// A connection from another local address that merely reuses the port number (127.0.0.2:P
    /// to some other server) is not a connection to the listener on 127.0.0.1:P.
    @Test func outgoingConnectionFromAnotherAddressIsNotTheListeners() throws {
        let (listener, other, client) = try Net.onFreePorts(2) { ports -> (TestSocket, TestSocket, TestSocket) in
            let l = try Net.tcpListener("127.0.0.1", port: ports[0], backlog: 8)
            let o = try Net.tcpListener("127.0.0.1", port: ports[1], backlog: 8)
            let c = try Net.connect("127.0.0.1", port: ports[1], from: ("127.0.0.2", ports[0]))
            return (l, o, c)
        }
        defer { listener.close(); other.close(); client.close() }
        let port = listener.port
        #expect(client.port == port)

        // The outgoing connection is visible for what it is.
        let out = runPortwatch(["connections", "\(other.port)", "--json"])
        #expect(out.json()?.objects("connections").contains {
            $0.object("local")?.string("address") == "127.0.0.2" && $0.object("local")?.int("port") == Int(port)
        } == true, "\(out)")

        // Only a listener on a wildcard or on the socket's own address could have accepted it.
        let row = portRow("\(port)", port: port).row
        let check = checkJSON(["\(port)"])
        #expect(row?.object("connections")?.int("established") == 0, "\(String(describing: row))")
        #expect(check.json?.string("verdict") == "listening", "\(check.result)")
    }
}

// MARK: - The harness itself

@Suite("harness", .blocking)
struct HarnessTests {
    /// Children (portwatch, python3, ip) must not inherit the test process's sockets, or a
    /// connection the test closes stays open in the child and every count is off.
    @Test func childrenInheritNoDescriptors() throws {
        // A descriptor without close-on-exec, as other code in this process may hold.
        let leaky = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #expect(leaky >= 0)
        defer { close(leaky) }
        let child = try Child.spawn("/bin/ls", ["/proc/self/fd"])
        let r = child.collect(timeout: 5)
        let fds = String(decoding: r.stdout, as: UTF8.self).split(separator: "\n").compactMap { Int($0) }
        // 0-2, and the directory ls itself is reading.
        #expect(fds.count == 4 && fds.prefix(3) == [0, 1, 2], "open in the child: \(fds), leaky fd \(leaky)")
    }

    @Test func portwatchBinaryIsFound() {
        #expect(access(TestEnv.portwatchPath, X_OK) == 0, "\(TestEnv.portwatchPath)")
    }
}

// MARK: - Bad input

/// Each must exit 2 with exactly one line on stderr starting "portwatch: ", and never trap.
private let badInputs: [[String]] = [
    ["check", "65536"],
    ["check", "-1"],
    ["check", "--", "-1"],
    ["check", "abc"],
    ["check", "80-"],
    ["check", "90-80"],
    ["check", "80,,81"],
    ["check", "foo/sctp"],
    ["check", "nosuchservice"],
    ["check", "22", "--host", "[::1"],
    ["check", "22", "--host", "::1", "--timeout", "5x"],
    ["wait", "22", "--until", "sideways"],
    ["ports", "--bogus"],
    ["check", String(repeating: "9", count: 5000)],
    ["connections", "80", "--state", "nonsense"],
    ["kill", "22", "--signal", "FOO", "--yes"],
    ["free", "--count", "0"],
    ["free", "--range", "10-5"],
    ["check", "22", "--expect", "open"],
    ["check", "0"],
    ["check", ""],
    ["check", "22/"],
    ["check", "22", "--host", "10.0.0.1", "--expect", "free"],
    ["wait", "22", "--until", "open"],
    ["free", "--count", "-3"],
    ["connections", "80", "--state", "listen"],
    ["bogus-command"],
]

@Suite("bad input: exit 2, one line on stderr", .blocking)
struct BadInputTests {
    @Test(arguments: badInputs)
    func rejected(_ arguments: [String]) {
        let r = runPortwatch(arguments, timeout: 10)
        expectOneErrorLine(r)
        #expect(r.stdout.isEmpty, "\(arguments): nothing on stdout for an error: \(r)")
        // The same with --json: still an error on stderr, no half document.
        let j = runPortwatch(arguments + ["--json"], timeout: 10)
        expectOneErrorLine(j)
        #expect(j.stdout.isEmpty, "\(arguments) --json: \(j)")
    }

    @Test func help() {
        let r = runPortwatch(["--help"])
        #expect(r.status == 0, "\(r)")
        #expect(r.stdout.contains("portwatch"))
        #expect(r.stdout.contains("check"))
        let sub = runPortwatch(["check", "--help"])
        #expect(sub.status == 0, "\(sub)")
        #expect(sub.stdout.contains("--expect"))
    }
}

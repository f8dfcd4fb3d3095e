import Foundation
import Testing
import PortwatchTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// A listener that accepts every connection and reads it to EOF on a thread of its own, so the
/// kernel counts every byte as received; it closes each connection after EOF.
final class SinkServer: @unchecked Sendable {
    let listener: TestSocket
    var port: UInt16 { listener.port }
    private let done = NSCondition()
    private var stopped = false
    private(set) var bytes = 0
    private(set) var connections = 0
    /// Bytes read so far, open connections included.
    private var arrived = 0

    init() throws {
        listener = try Net.tcpListenerOnFreePort("127.0.0.1", backlog: 4096)
        let thread = Thread { [self] in self.serve() }
        thread.start()
    }

    private func serve() {
        while true {
            var pfd = pollfd(fd: listener.fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&pfd, 1, 100)
            done.lock()
            let stop = stopped
            done.unlock()
            if stop { return }
            if ready <= 0 { continue }
            let fd = Glibc.accept(listener.fd, nil, nil)
            if fd < 0 { continue }
            // One reader per connection: a long-lived connection must not hold up the others.
            Thread { [self] in self.drain(fd) }.start()
        }
    }

    private func drain(_ fd: Int32) {
        var buffer = [UInt8](repeating: 0, count: 65536)
        var total = 0
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            total += n
            done.lock()
            arrived += n
            done.broadcast()
            done.unlock()
        }
        Glibc.close(fd)
        done.lock()
        bytes += total
        connections += 1
        done.broadcast()
        done.unlock()
    }

    /// Waits until `count` connections have been read to the end.
    func waitForConnections(_ count: Int, timeout: Double = 10) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        done.lock()
        defer { done.unlock() }
        while connections < count {
            if !done.wait(until: deadline) { return false }
        }
        return true
    }

    /// Waits until `count` bytes have been read, over all connections.
    func waitForBytes(_ count: Int, timeout: Double = 10) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        done.lock()
        defer { done.unlock() }
        while arrived < count {
            if !done.wait(until: deadline) { return false }
        }
        return true
    }

    func stop() {
        done.lock()
        stopped = true
        done.unlock()
        listener.close()
    }
}

/// The port's entry in `check --json` / `ports --json` output.
private func window(_ json: [String: Any]?) -> [String: Any]? { json?.object("window") }

@Suite(.serialized, .blocking) struct TrafficTests {
    /// Counting closed connections needs the destroy-event groups (CAP_NET_ADMIN).
    static let canSeeDestroyEvents = TestEnv.isRoot

    @Test(.enabled(if: TrafficTests.canSeeDestroyEvents, "needs root: closed connections come from sock_diag destroy events"))
    func windowTotalsEqualWhatWasSent() throws {
        let sink = try SinkServer()
        defer { sink.stop() }
        // A long-lived connection opened (and used) before the window.
        let long = try Net.connect("127.0.0.1", port: sink.port)
        try long.sendAll([UInt8](repeating: 1, count: 7_000))
        // Read by the server before the baseline, so none of it belongs to the window.
        #expect(sink.waitForBytes(7_000))

        let run = try startPortwatchWhenReady(["check", "\(sink.port)", "--sample", "4s", "--expect", "listening", "--json"])
        try long.sendAll([UInt8](repeating: 2, count: 100_000))
        for _ in 0..<50 {
            let c = try Net.connect("127.0.0.1", port: sink.port)
            try c.sendAll([UInt8](repeating: 3, count: 2_000))
            c.close()
        }
        #expect(sink.waitForConnections(50))
        let result = run.finish(timeout: 20)
        #expect(result.status == 0, "\(result)")
        let w = try #require(window(result.json()))
        let received = try #require(w.object("bytes")?.int("received"))
        // Ground truth 200,000 payload bytes; each closed connection may add its FIN's byte.
        #expect(received >= 200_000 && received <= 200_000 + 50, "received \(received)")
        #expect(w.int("connections_opened") == 50)
        #expect(w.int("connections_closed") == 50)
        long.close()
        #expect(sink.waitForConnections(51))
    }

    @Test(.enabled(if: TrafficTests.canSeeDestroyEvents, "needs root: closed connections come from sock_diag destroy events"))
    func thousandsOfShortConnectionsInOneWindowAreAllCounted() throws {
        let sink = try SinkServer()
        defer { sink.stop() }
        let count = 3_000
        let run = try startPortwatchWhenReady(["ports", "\(sink.port)", "--sample", "7s", "--json"])
        // Bounded in time too, well inside the window: on a loaded machine fewer connections are
        // made, and the window must count exactly those.
        let started = monotonic()
        var made = 0
        for _ in 0..<count where monotonic() - started < 4 {
            let c = try Net.connect("127.0.0.1", port: sink.port)
            try c.sendAll([UInt8](repeating: 7, count: 100))
            c.close()
            made += 1
        }
        #expect(made >= 100, "only \(made) connections in 4 s")
        #expect(sink.waitForConnections(made))
        let result = run.finish(timeout: 20)
        #expect(result.status == 0, "\(result)")
        let port = try #require(result.json()?.objects("ports").first { $0.int("port") == Int(sink.port) })
        let w = try #require(window(port))
        let received = try #require(w.object("bytes")?.int("received"))
        #expect(received >= made * 100 && received <= made * 101, "received \(received) from \(made) connections")
        #expect(w.int("connections_opened") == made)
        #expect(w.int("connections_closed") == made)
        #expect(result.json()?.strings("notes")?.contains { $0.contains("ENOBUFS") } == false)
    }

    @Test func listenerThatNeverAcceptsIsOverloadedWithDropsCounted() throws {
        let listener = try Net.tcpListenerOnFreePort("127.0.0.1", backlog: 1)
        defer { listener.close() }
        var clients: [TestSocket] = []
        defer { clients.forEach { $0.close() } }
        for _ in 0..<4 { clients.append(try Net.connect("127.0.0.1", port: listener.port, nonBlocking: true)) }
        let run = try startPortwatchWhenReady(["check", "\(listener.port)", "--sample", "2500ms", "--expect", "overloaded", "--json"])
        // More SYNs into a full queue: the kernel drops them (and their retransmissions).
        for _ in 0..<6 { clients.append(try Net.connect("127.0.0.1", port: listener.port, nonBlocking: true)) }
        let result = run.finish(timeout: 20)
        let json = try #require(result.json())
        #expect(json.string("verdict") == "overloaded", "\(result)")
        #expect(result.status == 0)
        let drops = window(json)?.object("errors")?.int("listen_drops") ?? 0
        #expect(drops > 0, "listen drops in the window: \(result)")
        let queue = try #require(json.object("accept_queue"))
        #expect((queue.int("current") ?? 0) > (queue.int("max") ?? 0))
    }

    /// Forced procfs has no backlog and no per-listener drops (/proc/net/tcp lacks both): the same
    /// never-accepting listener is overloaded by the system's listen drops over the window, and
    /// the reason says they are system-wide.
    @Test func forcedProcfsListenerIsOverloadedBySystemListenDrops() throws {
        let listener = try Net.tcpListenerOnFreePort("127.0.0.1", backlog: 1)
        defer { listener.close() }
        var clients: [TestSocket] = []
        defer { clients.forEach { $0.close() } }
        for _ in 0..<4 { clients.append(try Net.connect("127.0.0.1", port: listener.port, nonBlocking: true)) }
        let procfs = ["PORTWATCH_SOCKET_SOURCE": "procfs"]
        let run = try startPortwatchWhenReady(["check", "\(listener.port)", "--sample", "2500ms", "--json"],
                                              environment: procfs)
        for _ in 0..<6 { clients.append(try Net.connect("127.0.0.1", port: listener.port, nonBlocking: true)) }
        let result = run.finish(timeout: 20)
        let json = try #require(result.json(), "\(result)")
        #expect(json.string("verdict") == "overloaded", "\(result)")
        let reason = json.objects("reasons").first { $0.string("reason") == "system_listen_drops_rising" }
        #expect((reason?.int("count") ?? 0) > 0, "\(result)")
        #expect((json.object("system_errors")?.int("listen_drops") ?? 0) > 0, "\(result)")
    }

    @Test(.enabled(if: TestEnv.canCreateNamespaces, "needs root, ip, nft and python3 for a test host in a network namespace"))
    func outgoingConnectToADroppingHostIsATimeoutForThatRemotePort() throws {
        let lab = try NetnsLab()
        defer { lab.destroy() }
        let blackhole: UInt16 = 5999
        try lab.nft(lab.server, """
            table inet pwtest {
              chain input { type filter hook input priority 0; tcp dport \(blackhole) drop; }
            }
            """)
        // portwatch watches the client namespace while a python client there gives up on
        // three connects (SYNs dropped by the server host) after 300 ms each.
        let run = try startPortwatchWhenReady(["ports", "--all", "--sample", "4s", "--json", "--no-processes"], netns: lab.client)
        let script = """
            import socket
            for _ in range(3):
                s = socket.socket(); s.settimeout(0.3)
                try: s.connect(("\(lab.serverV4)", \(blackhole)))
                except OSError: pass
                s.close()
            """
        let client = lab.exec(lab.client, [TestEnv.python3 ?? "python3", "-c", script])
        #expect(client.status == 0, "\(client.stderr)")
        let result = run.finish(timeout: 20)
        let rows = result.json()?.objects("ports") ?? []
        let remote = try #require(rows.first { $0.string("role") == "remote" && $0.int("port") == Int(blackhole) }, "\(result)")
        #expect(window(remote)?.object("errors")?.int("connect_timeouts") == 3, "\(remote)")
        #expect(window(remote)?.object("errors")?.int("connect_refused") == 0)
    }

    @Test(.enabled(if: TestEnv.isRoot, "needs root: packet capture uses an AF_PACKET socket (CAP_NET_RAW)"))
    func captureCountsUDPPayloadAndClosedPortHits() throws {
        let (v4, v6) = try Net.udpPair()
        defer { v4.close(); v6.close() }
        let closed = try Net.onFreePorts(udp: true) { $0[0] }
        let run = try startPortwatchWhenReady(["ports", "\(v4.port)/udp", "--sample", "3s", "--capture", "--json"])
        let sender = try Net.udpSocket("127.0.0.1")
        defer { sender.close() }
        let sender6 = try Net.udpSocket("::1")
        defer { sender6.close() }
        let payload = [UInt8](repeating: 9, count: 700)
        for _ in 0..<400 {
            try sender.send(payload, to: "127.0.0.1", port: v4.port)
            try sender6.send(payload, to: "::1", port: v6.port)
        }
        for _ in 0..<3 { try sender.send([1], to: "127.0.0.1", port: closed) }
        let result = run.finish(timeout: 20)
        #expect(result.status == 0, "\(result)")
        let json = try #require(result.json())
        let row = try #require(json.objects("ports").first { $0.int("port") == Int(v4.port) && $0.string("protocol") == "udp" })
        let received = try #require(window(row)?.object("bytes")?.int("received"))
        let truth = 800 * 700
        // Payload bytes within 1% (the kernel may drop a datagram under a receive-buffer squeeze).
        #expect(abs(received - truth) <= truth / 100, "captured \(received) of \(truth)")
        #expect(window(row)?.object("packets")?.int("received") ?? 0 <= 800)
        let hits = json.objects("closed_port_hits").filter { $0.int("port") == Int(closed) && $0.string("protocol") == "udp" }
        #expect(hits.first?.int("packets") == 3, "\(json.objects("closed_port_hits"))")
        #expect(hits.first?.string("source") == "127.0.0.1")
    }

    @Test(.enabled(if: TestEnv.isRoot, "needs root: packet capture uses an AF_PACKET socket (CAP_NET_RAW)"))
    func captureCountsResetsOnTheServerPort() throws {
        let sink = try SinkServer()
        defer { sink.stop() }
        let run = try startPortwatchWhenReady(["ports", "\(sink.port)", "--sample", "3s", "--capture", "--json"])
        // Three clients abort (SO_LINGER 0: close sends a reset instead of a FIN).
        for _ in 0..<3 {
            let c = try Net.connect("127.0.0.1", port: sink.port)
            try c.sendAll([1, 2, 3])
            var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
            setsockopt(c.fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
            c.close()
        }
        let result = run.finish(timeout: 20)
        let row = try #require(result.json()?.objects("ports").first { $0.int("port") == Int(sink.port) }, "\(result)")
        #expect(window(row)?.object("errors")?.int("resets_received") == 3, "\(row)")
        #expect(window(row)?.object("errors")?.int("resets_sent") == 0)
    }

    @Test(.enabled(if: TestEnv.isRoot, "needs root: packet capture uses an AF_PACKET socket (CAP_NET_RAW)"))
    func topWithCaptureReportsUDPRatesAndClosedPortHits() throws {
        let (v4, v6) = try Net.udpPair()
        defer { v4.close(); v6.close() }
        let closed = try Net.onFreePorts(udp: true) { $0[0] }
        // Refreshes stream as JSON Lines; the datagrams sent after the baseline must all show
        // up, summed over the refreshes, however the machine's load spreads them over windows.
        let run = try startPortwatchWhenReady(["top", "\(v4.port)/udp", "--iterations", "60", "--interval", "250ms",
                                               "--capture", "--json"])
        defer { run.child.kill() }
        let sender = try Net.udpSocket("127.0.0.1")
        defer { sender.close() }
        for _ in 0..<100 { try sender.send([UInt8](repeating: 4, count: 250), to: "127.0.0.1", port: v4.port) }
        try sender.send([0], to: "127.0.0.1", port: closed)
        var received = 0
        var hits = 0
        var refreshes: [String] = []
        // One refresh more after the totals are reached: a late double count would show there.
        var extra = 0
        while extra < 2, let line = run.child.readLine(timeout: 20) {
            refreshes.append(line)
            let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "\(line)")
            let row = try #require(object.objects("ports").first { $0.int("port") == Int(v4.port) }, "\(line)")
            received += window(row)?.object("bytes")?.int("received") ?? 0
            hits += object.objects("closed_port_hits").filter { $0.int("port") == Int(closed) }.compactMap { $0.int("packets") }.reduce(0, +)
            if received >= 25_000 && hits >= 1 { extra += 1 }
        }
        #expect(received == 25_000, "\(refreshes)")
        #expect(hits == 1, "\(refreshes)")
    }

    @Test func captureWithoutSampleIsAUsageError() {
        let result = runPortwatch(["ports", "--capture"])
        #expect(result.status == 2)
        #expect(result.stderrLines.count == 1 && result.stderr.hasPrefix("portwatch: "))
    }

    @Test func topJSONLinesOnePerRefresh() throws {
        let listener = try Net.tcpListenerOnFreePort("127.0.0.1")
        defer { listener.close() }
        let result = runPortwatch(["top", "\(listener.port)", "--iterations", "2", "--interval", "300ms", "--json"], timeout: 20)
        #expect(result.status == 0, "\(result)")
        let lines = result.stdout.split(separator: "\n")
        #expect(lines.count == 2)
        for line in lines {
            let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            let ports = object.objects("ports")
            #expect(ports.contains { $0.int("port") == Int(listener.port) && $0.bool("listening") == true })
            #expect(ports.allSatisfy { $0.object("rates")?["received_bps"] != nil })
        }
    }

    @Test(.enabled(if: TestEnv.which("tmux") != nil, "needs tmux to drive the full-screen view"))
    func topDrawsSortsAndQuitsRestoringTheTerminal() throws {
        let tmux = try #require(TestEnv.which("tmux"))
        let session = "pwtop\(getpid())"
        let start = runTool(tmux, ["new-session", "-d", "-s", session, "-x", "120", "-y", "30",
                                   "env", "-i", "PATH=/usr/bin:/bin", "TERM=xterm", "PS1=READY$ ", "bash", "--norc", "--noprofile"])
        #expect(start.status == 0, "\(start.stderr)")
        defer { _ = runTool(tmux, ["kill-session", "-t", session]) }
        func screen() -> String { runTool(tmux, ["capture-pane", "-p", "-t", session]).stdout }
        func type(_ keys: String...) { _ = runTool(tmux, ["send-keys", "-t", session] + keys) }

        #expect(poll(timeout: 5) { screen().contains("READY$") })
        type("stty -g > /tmp/\(session).before", "Enter")
        type("\(TestEnv.portwatchPath) top --interval 300ms", "Enter")
        #expect(poll(timeout: 10) { screen().contains("portwatch top") && screen().contains("LAST MINUTE") }, "\(screen())")
        type("c")
        #expect(poll(timeout: 5) { screen().contains("sort conns") }, "\(screen())")
        // A narrower terminal: the view follows (no line wider than the window).
        _ = runTool(tmux, ["resize-window", "-t", session, "-x", "70", "-y", "20"])
        // Rows are clipped at the edge, not wrapped: the header row is followed by a port row.
        #expect(poll(timeout: 5) {
            let lines = screen().split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            guard let header = lines.firstIndex(where: { $0.hasPrefix("PROTO") }), header + 1 < lines.count else { return false }
            return lines.allSatisfy { $0.count <= 70 } && !lines[header].contains("LAST MINUTE")
                && (lines[header + 1].hasPrefix("tcp") || lines[header + 1].hasPrefix("udp"))
        }, "\(screen())")
        type("q")
        #expect(poll(timeout: 5) { !screen().contains("LAST MINUTE") && screen().contains("READY$") }, "\(screen())")
        type("stty -g > /tmp/\(session).after", "Enter")
        // The shell creates the file before stty writes its one line: wait for the line.
        #expect(poll(timeout: 5) {
            (try? String(contentsOfFile: "/tmp/\(session).after", encoding: .utf8))?.hasSuffix("\n") == true
        })
        let before = try String(contentsOfFile: "/tmp/\(session).before", encoding: .utf8)
        let after = try String(contentsOfFile: "/tmp/\(session).after", encoding: .utf8)
        try? FileManager.default.removeItem(atPath: "/tmp/\(session).before")
        try? FileManager.default.removeItem(atPath: "/tmp/\(session).after")
        #expect(before == after, "terminal modes changed: \(before) vs \(after)")
    }
}

extension TestSocket {
    /// Sends one datagram to address:port.
    func send(_ bytes: [UInt8], to address: String, port: UInt16) throws {
        var (storage, length, _) = try makeSockaddr(address, port)
        let n = withUnsafePointer(to: &storage) { sp in
            sp.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                bytes.withUnsafeBytes { sendto(fd, $0.baseAddress, $0.count, 0, sa, length) }
            }
        }
        if n < 0 { throw SupportError.errno("sendto") }
    }
}

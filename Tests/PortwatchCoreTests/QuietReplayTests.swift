import Testing
import PortwatchTestSupport
@testable import PortwatchCore
#if canImport(Glibc)
import Glibc
#endif

// A sampler that reuses a quiet namespace's last walk (the daemon's `reuseQuietDumps`) must
// answer exactly what a fresh walk answers: checked in a namespace of the test's own, where
// nothing but the test makes TCP traffic, so "quiet" and every change are known.

private let ipTool = findExecutable("ip")

/// The daemon's options: listeners and their connections, no outgoing rows.
private let daemonOptions = SnapshotOptions(query: SocketQuery(), includeOutgoing: false, processes: .none,
                                            skipOutgoing: true)

/// A UDP socket on 127.0.0.1:`port`, connected to 127.0.0.1:`peer` when given; nil on failure.
private func udpSocket(port: UInt16, peer: UInt16? = nil) -> Int32? {
    let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { return nil }
    func address(_ p: UInt16) -> sockaddr_in {
        var sin = sockaddr_in()
        sin.sin_family = sa_family_t(AF_INET)
        sin.sin_port = p.bigEndian
        sin.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        return sin
    }
    var local = address(port)
    let bound = withUnsafePointer(to: &local) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    var ok = bound == 0
    if ok, let peer {
        var remote = address(peer)
        ok = withUnsafePointer(to: &remote) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        } == 0
    }
    if !ok { close(fd); return nil }
    return fd
}

/// Every socket of a snapshot, comparable as a set.
private func records(_ snapshot: PortSnapshot) -> Set<SocketRecord> { Set(snapshot.sockets) }

@Suite("reusing a quiet namespace's TCP walk", .blocking,
       .enabled(if: geteuid() == 0 && ipTool != nil, "needs root and ip to make a network namespace"))
struct QuietReplayTests {
    @Test func quietSamplesReuseTheWalkAndEveryChangeWalksAgain() throws {
        let ip = try #require(ipTool)
        let name = "pwqr-\(getpid())"
        try #require(runCommand(ip, ["netns", "add", name], timeout: 5).status == 0)
        defer { _ = runCommand(ip, ["netns", "delete", name], timeout: 5) }
        try #require(runCommand(ip, ["-n", name, "link", "set", "lo", "up"], timeout: 5).status == 0)
        let ns = try NamespaceDirectory.resolve(name)
        // The namespace is the test's own: fixed ports outside the ephemeral range are free.
        let servicePort: UInt16 = 2_000
        let boundPort: UInt16 = 2_001

        // A listener and three connections with 500 bytes each way, all made inside.
        let made = try NamespaceEntry.run(in: ns) { () throws(PortwatchError) -> [LoopbackSocket]? in
            guard let listener = try? LoopbackSocket.listener(port: servicePort) else { return nil }
            var held = [listener]
            for _ in 0..<3 {
                guard let client = try? LoopbackSocket.tcp(), client.connect(servicePort) == 0,
                      let server = try? listener.accept() else { return nil }
                guard (try? client.sendAll(500)) != nil, server.receive(500) == 500,
                      (try? server.sendAll(500)) != nil, client.receive(500) == 500 else { return nil }
                held += [client, server]
            }
            return held
        }
        let held = try #require(made)
        defer { for s in held { s.close() } }
        // UDP: a bound service socket and a connected one on another service port (a replay
        // takes UDP from a fresh dump of its own and must filter it as the kernel does).
        let udp = try NamespaceEntry.run(in: ns) { () throws(PortwatchError) -> [Int32]? in
            guard let a = udpSocket(port: 2_002), let b = udpSocket(port: 2_003, peer: 2_002) else { return nil }
            return [a, b]
        }
        let udpFds = try #require(udp)
        defer { for fd in udpFds { close(fd) } }
        let (client, server) = (held[1], held[2])

        let sockets = NamespaceSockets()
        let source = try #require(try sockets.sources(for: [ns]).first?.get())
        let sampler = try Sampler(options: daemonOptions, source: source, namespace: ns, reuseQuietDumps: true)
        try sampler.start()
        #expect(sampler.dumpReuse?.walks == 1)

        /// Samples until one reuses the last walk: after traffic a delayed ACK may still be on
        /// its way, and the namespace is not quiet until it has gone. Bounded: 50 tries.
        func sampleUntilReused() throws -> (PortSnapshot, WindowReport)? {
            for _ in 0..<50 {
                let before = sampler.dumpReuse?.replays ?? 0
                let taken = try sampler.sample()
                if (sampler.dumpReuse?.replays ?? 0) > before { return taken }
                usleep(100_000)
            }
            return nil
        }

        // Quiet: the walk is reused, and it is what a walk now would say, socket for socket.
        _ = try #require(try sampleUntilReused())
        let (quiet, quietReport) = try #require(try sampleUntilReused())
        // Nothing moved at all and no queue held anything: a quiet sample after a quiet one did
        // not even dump the listeners and UDP again (the first took UDP whole for it).
        #expect(sampler.listingReuse ?? 0 >= 1)
        let fresh = try PortSnapshot.take(daemonOptions, source: source)
        #expect(records(quiet) == records(fresh))
        // The service's side of each connection (clients are outgoing: the daemon skips them).
        #expect(quiet.sockets.filter { $0.state == .established && $0.local.port == servicePort }.count == 3)
        #expect(quietReport.ports[PortKey.local(.tcp, servicePort)]?.traffic.bytesReceived ?? 0 == 0)
        #expect(quiet.sockets.contains { $0.proto == .udp && $0.local.port == 2_002 && $0.isListening })
        #expect(quiet.sockets.contains { $0.proto == .udp && $0.local.port == 2_003 && $0.peer.port == 2_002 })

        // 1,000 bytes each way on one connection: walked again, and counted exactly.
        try client.sendAll(1_000)
        #expect(server.receive(1_000) == 1_000)
        try server.sendAll(1_000)
        #expect(client.receive(1_000) == 1_000)
        let walksBeforeBusy = sampler.dumpReuse?.walks ?? 0
        let (_, busyReport) = try sampler.sample()
        #expect(sampler.dumpReuse?.walks == walksBeforeBusy + 1)
        let busy = try #require(busyReport.ports[PortKey.local(.tcp, servicePort)])
        #expect(busy.traffic.bytesReceived == 1_000)
        #expect(busy.traffic.bytesSent == 1_000)

        // Quiet again: reused.
        _ = try #require(try sampleUntilReused())

        // A connection left in the accept queue: the next quiet sample still reads the listener
        // (a queue drains with no packet), and the accept that drains it is seen at once.
        let pending = try NamespaceEntry.run(in: ns) { () throws(PortwatchError) -> LoopbackSocket? in
            guard let c = try? LoopbackSocket.tcp(), c.connect(servicePort) == 0 else { return nil }
            return c
        }
        let waiting = try #require(pending)
        defer { waiting.close() }
        let (queued, _) = try sampler.sample()
        #expect(queued.sockets.first { $0.state == .listen && $0.local.port == servicePort }?.receiveQueue == 1)
        let listings = sampler.listingReuse
        _ = try sampler.sample()
        #expect(sampler.listingReuse == listings)
        // The accept moves no counter, but the drained queue makes the sampler walk again, so
        // the accepted connection has its inode (its owner) at once.
        let accepted = try held[0].accept()
        defer { accepted.close() }
        let (drained, _) = try sampler.sample()
        #expect(drained.sockets.contains { $0.state == .established && $0.local.port == servicePort && $0.inode == 0 } == false)
        #expect(drained.sockets.first { $0.state == .listen && $0.local.port == servicePort }?.receiveQueue == 0)
        let freshDrained = records(try PortSnapshot.take(daemonOptions, source: source))
        #expect(records(drained) == freshDrained, "\(records(drained).subtracting(freshDrained)) vs \(freshDrained.subtracting(records(drained)))")

        // A socket made and bound (no segment, no hashing): the new socket moves the
        // namespace's socket count, so the bound-only socket is seen at once.
        let bound = try NamespaceEntry.run(in: ns) { () throws(PortwatchError) -> LoopbackSocket? in
            guard let s = try? LoopbackSocket.tcp(), (try? s.bind(boundPort)) != nil else { return nil }
            return s
        }
        let boundOnly = try #require(bound)
        defer { boundOnly.close() }
        let walksBeforeBind = sampler.dumpReuse?.walks ?? 0
        let (afterBind, _) = try sampler.sample()
        #expect(sampler.dumpReuse?.walks == walksBeforeBind + 1)
        #expect(afterBind.sockets.contains { $0.isBoundOnly && $0.local.port == boundPort })

        // A connection closed from both ends: walked, and it is gone from the live sockets.
        let cookiesBefore = Set(afterBind.sockets.filter { $0.state == .established }.map(\.cookie))
        client.close()
        server.close()
        let (afterClose, closeReport) = try sampler.sample()
        #expect(sampler.dumpReuse?.walks == walksBeforeBind + 2)
        let cookiesAfter = Set(afterClose.sockets.filter { $0.state == .established }.map(\.cookie))
        #expect(cookiesAfter.count < cookiesBefore.count && cookiesAfter.isSubset(of: cookiesBefore))
        // The kernel broadcasts a destroy event from a work queue (and the server's side may
        // still wait in LAST_ACK for the client's ACK): on a loaded machine the close can reach
        // the sampler a sample later. It is counted once, in this sample or the next few.
        var closedCount = closeReport.ports[PortKey.local(.tcp, servicePort)]?.closed ?? 0
        for _ in 0..<50 where closedCount == 0 {
            usleep(100_000)
            closedCount += try sampler.sample().1.ports[PortKey.local(.tcp, servicePort)]?.closed ?? 0
        }
        #expect(closedCount == 1)

        // And what a fresh walk says still matches the sampler's view after the changes.
        let (last, _) = try sampler.sample()
        let freshAgain = try PortSnapshot.take(daemonOptions, source: source)
        #expect(records(last) == records(freshAgain))
    }

    /// Without the option nothing is reused: every sample walks (the CLI's `top`, `--sample`).
    @Test func samplersWithoutTheOptionAlwaysWalk() throws {
        let sampler = try Sampler(options: daemonOptions)
        try sampler.start()
        _ = try sampler.sample()
        #expect(sampler.dumpReuse == nil)
    }
}

/// The counters kept for a sample are read as the general parser reads them, from the live files.
@Test func wantedCountersMatchTheGeneralParserOnTheLiveFiles() throws {
    for file in ["/proc/net/snmp", "/proc/net/netstat"] {
        let bytes = try #require(readFileBytes(file))
        let all = SystemCounters.parsePairedLines(String(decoding: bytes, as: UTF8.self))
        var wanted: [String: Int64] = [:]
        SystemCounters.parseWantedPairs(bytes, into: &wanted)
        #expect(!wanted.isEmpty)
        for (key, value) in wanted { #expect(all[key] == value, "\(file) \(key)") }
        for (group, names) in SystemCounters.wanted {
            for n in names where all["\(group).\(n)"] != nil { #expect(wanted["\(group).\(n)"] != nil, "\(group).\(n)") }
        }
    }
    if let bytes = readFileBytes("/proc/net/snmp6") {
        let all = SystemCounters.parseSnmp6(String(decoding: bytes, as: UTF8.self))
        var wanted: [String: Int64] = [:]
        SystemCounters.parseWantedSnmp6(bytes, into: &wanted)
        #expect(wanted.count == 4)
        for (key, value) in wanted { #expect(all[key] == value, "snmp6 \(key)") }
    }
    var stat: [String: Int64] = [:]
    SystemCounters.parseSockstat(Array("sockets: used 41\nTCP: inuse 7 orphan 0 tw 3 alloc 9 mem 1\nUDP: inuse 2 mem 0\n".utf8), into: &stat)
    SystemCounters.parseSockstat(Array("TCP6: inuse 5\nUDP6: inuse 1\n".utf8), into: &stat)
    #expect(stat == ["Sockstat.SocketsUsed": 41, "Sockstat.TCPInuse": 7, "Sockstat.TCPTw": 3, "Sockstat.UDPInuse": 2,
                     "Sockstat6.TCP6Inuse": 5, "Sockstat6.UDP6Inuse": 1])
    #expect(SystemCounters.read().tcpQuietFingerprint != nil)
    #expect(SystemCounters(values: ["Tcp.InSegs": 1]).tcpQuietFingerprint == nil)
}

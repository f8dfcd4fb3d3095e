// Which side of a connection is the server's, decided without a live listener, and where
// failed outgoing connects are counted: real sockets on loopback, real destroy events.

import Testing
#if canImport(Glibc)
import Glibc
#endif
@testable import PortwatchCore

/// A dump and destroy events restricted to one port (kept small while other tests run).
private func sampler(port: UInt16) throws -> Sampler {
    var query = SocketQuery(protocols: [.tcp])
    query.ports = [.tcp: PortFilter(local: [port...port], peer: [port...port])]
    return try Sampler(options: SnapshotOptions(query: query, includeOutgoing: true, processes: .none))
}

/// Samples until `done` says the windows so far hold what the test waits for (at most 40
/// samples, 100 ms apart: destroy events come from a kernel work queue, a little late).
private func sampleUntil(_ sampler: Sampler, _ done: ([WindowReport]) -> Bool) throws -> [WindowReport] {
    var reports: [WindowReport] = []
    for _ in 0..<40 {
        reports.append(try sampler.sample().1)
        if done(reports) { break }
        sleepSeconds(0.1)
    }
    return reports
}

@Suite(.serialized) struct SideTests {
    /// `iperf3 -s -1`: the listener closes once its client is in; the transfer and the close
    /// that follow are counted on the server's port, not on the client's ephemeral port. The
    /// listener's port is kernel-picked, so both ports lie in the ephemeral range.
    @Test(.enabled(if: getuid() == 0, "needs root: closed connections come from destroy events"))
    func bytesOfAConnectionWhoseListenerClosedCountOnTheServerPort() throws {
        let listener = try LoopbackSocket.listener()
        let port = listener.port
        let s = try sampler(port: port)
        try s.start()
        // The kernel broadcasts destroy events from a work queue: on a loaded machine they can
        // come after the next sample. A second subscriber tells the test when they are out, so
        // the first sample sees them (a sample between would no longer know the listener).
        let watch = try DestroyEventStream()
        watch.start()
        defer { watch.stop() }
        let client = try LoopbackSocket.tcp()
        #expect(client.connect(port) == 0)
        let server = try listener.accept()
        listener.close()
        try client.sendAll(1_000_000)
        #expect(server.receive(1_000_000) == 1_000_000)
        let clientPort = client.port
        client.close()
        server.close()
        var serverClosed = false
        for _ in 0..<200 where !serverClosed {
            serverClosed = watch.drain().sockets.contains { $0.local.port == port && $0.peer.port == clientPort }
            if !serverClosed { sleepSeconds(0.05) }
        }
        #expect(serverClosed, "the server socket's destroy event never came")

        let server_ = PortKey.local(.tcp, port)
        let reports = try sampleUntil(s) { r in r.reduce(0) { $0 + $1.activity(server_).closed } >= 1 }
        let received = reports.reduce(UInt64(0)) { $0 + $1.activity(server_).traffic.bytesReceived }
        // The destroy event's bytes_received counts the client's FIN as one more byte.
        #expect((1_000_000...1_000_001).contains(received), "window bytes on the server's port: \(received)")
        #expect(reports.allSatisfy { $0.ports[PortKey(role: .remote, proto: .tcp, port: clientPort)] == nil })
        #expect(reports.allSatisfy { $0.ports[PortKey.local(.tcp, clientPort)] == nil })
    }

    /// A connection first seen after its listener closed stays on the listener's row while it
    /// lives (the side is remembered across samples).
    @Test func liveConnectionStaysOnItsRowAfterTheListenerCloses() throws {
        let listener = try LoopbackSocket.listener()
        let port = listener.port
        let s = try sampler(port: port)
        try s.start()
        let client = try LoopbackSocket.tcp()
        #expect(client.connect(port) == 0)
        let server = try listener.accept()
        defer { client.close(); server.close() }
        listener.close()
        for _ in 0..<3 {
            let (snapshot, _) = try s.sample()
            let row = snapshot.ports.first { $0.key == PortKey.local(.tcp, port) }
            #expect(row?.connections.established == 1, "\(snapshot.ports.map(\.key))")
            #expect(!snapshot.ports.contains { $0.key == PortKey.local(.tcp, client.port) })
        }
    }

    /// Refused connects: non-blocking ones (curl, Go, every event loop) count as connect_refused
    /// on the remote port's row; blocking ones, whose destination the kernel erases before the
    /// socket closes, are counted without a port. No source port becomes a row of its own.
    @Test(.enabled(if: getuid() == 0, "needs root: closed connections come from destroy events"))
    func refusedConnectsCountOnTheRemoteRowOnly() throws {
        let port = try unusedPort()
        let s = try sampler(port: port)
        try s.start()
        var sourcePorts: [UInt16] = []
        for _ in 0..<3 {
            let blocking = try LoopbackSocket.tcp()
            #expect(blocking.connect(port) == ECONNREFUSED)
            sourcePorts.append(blocking.port)
            blocking.close()
            let nonBlocking = try LoopbackSocket.tcp(nonBlocking: true)
            #expect(nonBlocking.connect(port) == 0 || errno == ECONNREFUSED)
            #expect(nonBlocking.connectResult() == ECONNREFUSED)
            sourcePorts.append(nonBlocking.port)
            nonBlocking.close()
        }
        let remote = PortKey(role: .remote, proto: .tcp, port: port)
        let reports = try sampleUntil(s) { r in
            r.reduce(0) { $0 + $1.activity(remote).connectRefused } >= 3 && r.reduce(0) { $0 + $1.connectFailuresWithoutPort } >= 3
        }
        #expect(reports.reduce(0) { $0 + $1.activity(remote).connectRefused } == 3)
        #expect(reports.reduce(0) { $0 + $1.connectFailuresWithoutPort } >= 3)
        for p in sourcePorts where p != 0 {
            #expect(reports.allSatisfy { $0.ports[PortKey.local(.tcp, p)] == nil }, "source port \(p) became a row")
        }
    }

    /// Timed-out connects: SYNs to a listener whose accept queue is full are dropped, so the
    /// clients wait in SYN_SENT until they give up; each counts as a connect timeout on the
    /// remote port's row, and their source ports make no rows.
    @Test(.enabled(if: getuid() == 0, "needs root: closed connections come from destroy events"))
    func abandonedConnectsAreTimeoutsOnTheRemoteRow() throws {
        let listener = try LoopbackSocket.listener(port: try unusedPort(), backlog: 1)
        let port = listener.port
        // Two handshakes fill a queue whose limit is 1; nobody accepts.
        let fillers = try (0..<2).map { _ in try LoopbackSocket.tcp() }
        for f in fillers { #expect(f.connect(port) == 0) }
        defer { fillers.forEach { $0.close() } }
        let s = try sampler(port: port)
        try s.start()
        var sourcePorts: [UInt16] = []
        for _ in 0..<3 {
            let c = try LoopbackSocket.tcp(nonBlocking: true)
            #expect(c.connect(port) == 0)
            // Still waiting: the listener dropped the SYN.
            #expect(c.connectResult(timeout: 200) == 0)
            sourcePorts.append(c.port)
            c.close()
        }
        let remote = PortKey(role: .remote, proto: .tcp, port: port)
        let reports = try sampleUntil(s) { r in r.reduce(0) { $0 + $1.activity(remote).connectTimeouts } >= 3 }
        #expect(reports.reduce(0) { $0 + $1.activity(remote).connectTimeouts } == 3)
        #expect(reports.reduce(0) { $0 + $1.activity(remote).connectRefused } == 0)
        for p in sourcePorts {
            #expect(reports.allSatisfy { $0.ports[PortKey.local(.tcp, p)] == nil }, "source port \(p) became a row")
        }
    }
}

@Suite struct ClassifierRules {
    private func socket(_ local: String, _ lport: UInt16, _ peer: String, _ pport: UInt16,
                        state: SocketState = .established, v6only: Bool = false, cookie: UInt64 = 1) -> SocketRecord {
        var s = SocketRecord(proto: .tcp, state: state, local: Endpoint(address: IPAddress(local)!, port: lport),
                             peer: Endpoint(address: IPAddress(peer)!, port: pport), cookie: cookie)
        s.v6only = v6only
        return s
    }

    @Test func packedKeysOrderLikeTheirParts() {
        let keys = [PortKey(role: .remote, proto: .tcp, port: 1), PortKey.local(.udp, 53), PortKey.local(.tcp, 65535),
                    PortKey.local(.tcp, 80)]
        #expect(keys.sorted() == [PortKey.local(.tcp, 80), PortKey.local(.tcp, 65535), PortKey.local(.udp, 53),
                                  PortKey(role: .remote, proto: .tcp, port: 1)])
        for k in keys { #expect(PortKey(role: k.role, proto: k.proto, port: k.port) == k) }
    }

    @Test func v6onlyWildcardIsNoWildcardForIPv4() {
        let range = EphemeralRange(32768...60999)
        let v6only = socket("::", 40000, "::", 0, state: .listen, v6only: true)
        let dual = socket("::", 40000, "::", 0, state: .listen)
        let v4 = socket("127.0.0.1", 40000, "127.0.0.1", 50000)
        let mapped = socket("::ffff:127.0.0.1", 40000, "::ffff:127.0.0.1", 50000)
        let v6 = socket("::1", 40000, "::1", 50000)
        let only = PortClassifier(sockets: [v6only], ephemeral: range)
        #expect(only.key(for: v4).role == .remote)
        #expect(only.key(for: mapped).role == .remote)
        #expect(only.key(for: v6) == PortKey.local(.tcp, 40000))
        let both = PortClassifier(sockets: [dual], ephemeral: range)
        #expect(both.key(for: v4) == PortKey.local(.tcp, 40000))
        #expect(both.key(for: mapped) == PortKey.local(.tcp, 40000))
    }

    /// A client's source port may carry several connections (connect() shares it across
    /// destinations) and TIME_WAITs: only live connections make an endpoint a server's, and a
    /// connection to an endpoint a listener here serves is that listener's client — by the
    /// same address rules as for the local side (v6only, IPv4-mapped).
    @Test func sharedSourcePortsAndPeerListeners() {
        let range = EphemeralRange(32768...60999)
        let remote = { (port: UInt16) in PortKey(role: .remote, proto: .tcp, port: port) }
        let live = socket("127.0.0.1", 40000, "127.0.0.1", 41000)
        let waiting = socket("127.0.0.1", 40000, "127.0.0.1", 42000, state: .timeWait)
        let connecting = socket("127.0.0.1", 40000, "127.0.0.1", 43000, state: .synSent)
        let c = PortClassifier(sockets: [live, waiting, connecting], ephemeral: range)
        #expect([live, waiting, connecting].map { c.key(for: $0) } == [remote(41000), remote(42000), remote(43000)])

        // Two live connections share the port; a listener on either peer makes them clients.
        let second = socket("127.0.0.1", 40000, "127.0.0.1", 42000)
        #expect(PortClassifier(sockets: [live, second], ephemeral: range).key(for: live) == PortKey.local(.tcp, 40000))
        let peers = [socket("0.0.0.0", 41000, "0.0.0.0", 0, state: .listen), socket("127.0.0.1", 42000, "0.0.0.0", 0, state: .listen)]
        let both = PortClassifier(sockets: [live, second] + peers, ephemeral: range)
        #expect(both.key(for: live) == remote(41000) && both.key(for: second) == remote(42000))
        // A listener on another address, or a v6only `[::]`, could not have accepted them.
        let elsewhere = [socket("127.0.0.2", 41000, "0.0.0.0", 0, state: .listen),
                         socket("::", 42000, "::", 0, state: .listen, v6only: true)]
        let neither = PortClassifier(sockets: [live, second] + elsewhere, ephemeral: range)
        #expect(neither.key(for: live) == PortKey.local(.tcp, 40000) && neither.key(for: second) == PortKey.local(.tcp, 40000))
        // IPv4-mapped clients of an IPv4 listener and of a dual-stack `[::]`.
        let mapped = [socket("::ffff:127.0.0.1", 40000, "::ffff:127.0.0.1", 41000),
                      socket("::ffff:127.0.0.1", 40000, "::ffff:127.0.0.1", 42000)]
        let dual = [socket("127.0.0.1", 41000, "0.0.0.0", 0, state: .listen), socket("::", 42000, "::", 0, state: .listen)]
        let m = PortClassifier(sockets: mapped + dual, ephemeral: range)
        #expect(mapped.map { m.key(for: $0) } == [remote(41000), remote(42000)])
        // A server whose listener closed keeps its connections when its clients' ports are
        // nobody's listeners.
        let served = [socket("127.0.0.1", 44000, "127.0.0.1", 45000), socket("127.0.0.1", 44000, "127.0.0.1", 46000)]
        let gone = PortClassifier(sockets: served + peers, ephemeral: range)
        #expect(served.map { gone.key(for: $0) } == [PortKey.local(.tcp, 44000), PortKey.local(.tcp, 44000)])
    }

    @Test func closedSocketsAreBoundInDumpsButConnectionsInDestroyEvents() {
        let range = EphemeralRange(32768...60999)
        let reset = socket("127.0.0.1", 12000, "127.0.0.1", 13000, state: .close)
        let c = PortClassifier(sockets: [reset], ephemeral: range)
        #expect(c.key(for: reset) == PortKey.local(.tcp, 12000))
        // A destroyed client socket goes to its remote port; one whose destination the kernel
        // erased (a failed blocking connect) goes nowhere.
        let closedClient = socket("127.0.0.1", 45000, "127.0.0.1", 13000, state: .close)
        #expect(c.key(forClosed: closedClient) == PortKey(role: .remote, proto: .tcp, port: 13000))
        let erased = socket("0.0.0.0", 45000, "127.0.0.1", 0, state: .close)
        #expect(c.key(forClosed: erased) == nil)
    }
}

@Suite struct WindowCountsOnlyConnections {
    private func snapshot(_ sockets: [SocketRecord], at time: Double) -> PortSnapshot {
        let range = EphemeralRange(32768...60999)
        return PortSnapshot(takenAt: time, source: "test", sockets: sockets,
                            ports: summarizePorts(sockets, includeOutgoing: true, ephemeral: range),
                            owners: [:], processes: [:], notes: [],
                            classifier: PortClassifier(sockets: sockets, ephemeral: range))
    }

    /// A socket that only holds its port (bind() before listen()) neither opens nor closes a
    /// connection, in a dump or in its destroy event.
    @Test func boundSocketIsNoConnection() {
        let bound = SocketRecord(proto: .tcp, state: .close, local: Endpoint(address: .v4(0x7f00_0001), port: 12000),
                                 peer: Endpoint(address: .anyV4, port: 0), cookie: 5, tcp: TCPStats(), drops: 0)
        let key = PortKey.local(.tcp, 12000)
        var tracker = TrafficTracker()
        tracker.start(snapshot([], at: 0), system: .init())
        let seen = tracker.advance(snapshot([bound], at: 1), destroyed: DestroyBatch(sockets: [], overflows: 0), system: .init())
        #expect(seen.activity(key).opened == 0)
        let gone = tracker.advance(snapshot([], at: 2), destroyed: DestroyBatch(sockets: [bound], overflows: 0), system: .init())
        #expect(gone.activity(key).closed == 0)
        #expect(gone.connectFailuresWithoutPort == 0)
    }
}

@Suite struct VerdictRules {
    private let range = EphemeralRange(32768...60999)

    private func snapshot(_ sockets: [SocketRecord]) -> PortSnapshot {
        PortSnapshot(takenAt: 0, source: "test", sockets: sockets,
                     ports: summarizePorts(sockets, includeOutgoing: true, ephemeral: range),
                     owners: [:], processes: [:], notes: [], classifier: PortClassifier(sockets: sockets, ephemeral: range))
    }

    private func listener(_ port: UInt16, queue: UInt32 = 0, backlog: UInt32 = 8) -> SocketRecord {
        SocketRecord(proto: .tcp, state: .listen, local: Endpoint(address: .anyV4, port: port),
                     peer: Endpoint(address: .anyV4, port: 0), cookie: 1, receiveQueue: queue, sendQueue: backlog)
    }

    /// `listening` is met only while something listens, whatever its load; `busy` by overloaded too.
    @Test func expectationsFollowTheListenerNotTheLoad() throws {
        let idle = try #require(localChecks(ports: [(.tcp, 8080)], snapshot: snapshot([listener(8080)])).first)
        #expect(idle.verdict == .listening && idle.meets(.listening) && !idle.meets(.busy) && !idle.meets(.free))
        let full = try #require(localChecks(ports: [(.tcp, 8080)], snapshot: snapshot([listener(8080, queue: 9)])).first)
        #expect(full.verdict == .overloaded && full.meets(.listening) && full.meets(.busy))
        #expect(full.reasons == [.acceptQueueFull(current: 9, max: 8)])
        let bound = SocketRecord(proto: .tcp, state: .close, local: Endpoint(address: .v4(0x7f00_0001), port: 8081),
                                 peer: Endpoint(address: .anyV4, port: 0), cookie: 2)
        let held = try #require(localChecks(ports: [(.tcp, 8081)], snapshot: snapshot([bound])).first)
        #expect(held.verdict == .busy && held.boundSockets == 1 && !held.meets(.listening) && held.meets(.busy))
    }

    /// Drops rising in the window make a listening port overloaded, with the count; SYN cookies
    /// are named only where a queue was at its limit.
    @Test func windowDropsAndCookiesAreReasons() throws {
        var window = WindowReport(seconds: 1, ports: [:], system: [("syncookies_sent", 5)], eventOverflows: 0,
                                  closedConnectionsCounted: true, notes: [])
        var activity = PortActivity()
        activity.listenDrops = 3
        window.ports[PortKey.local(.tcp, 8080)] = activity
        let check = try #require(localChecks(ports: [(.tcp, 8080), (.tcp, 8082)],
                                             snapshot: snapshot([listener(8080), listener(8082)]), window: window).first)
        #expect(check.verdict == .overloaded)
        #expect(check.reasons == [.listenDropsRising(3), .syncookiesSent(5)])
        let quiet = localChecks(ports: [(.tcp, 8082)], snapshot: snapshot([listener(8082)]), window: window)
        #expect(quiet.first?.verdict == .listening && quiet.first?.reasons == [])
        let rows = portRows(snapshot: snapshot([listener(8080), listener(8082)]), window: window, includeOutgoing: false)
        #expect(rows.map(\.state) == [.overloaded, .listen])
        #expect(rows.first?.errorCount == 3 + 5)
    }
}

// Clients that share one source port: connect() reuses a source port for different
// destinations, so a local endpoint with several connections is not always a server's.
// Real sockets on loopback; every port is kernel-picked (inside the ephemeral range), so the
// ports alone never tell the sides apart.

import Testing
#if canImport(Glibc)
import Glibc
#endif
@testable import PortwatchCore

/// A TCP socket with SO_REUSEADDR, so a second one can bind the port a first one holds while
/// both connect to different destinations.
private func reusableClient() throws -> LoopbackSocket {
    let s = try LoopbackSocket.tcp()
    var one: Int32 = 1
    if setsockopt(s.fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size)) != 0 {
        throw SocketFailure("SO_REUSEADDR")
    }
    return s
}

/// Options for a dump of the sockets on `ports` (local or peer), with outgoing rows: small
/// while other tests run, and only ever our own sockets (the listeners' ports were bound by
/// bind(), so no other client's connect() takes them; the source port likewise).
private func options(_ ports: [UInt16]) -> SnapshotOptions {
    var query = SocketQuery(protocols: [.tcp])
    let ranges = ports.map { $0...$0 }
    query.ports = [.tcp: PortFilter(local: ranges, peer: ranges)]
    return SnapshotOptions(query: query, includeOutgoing: true, processes: .none)
}

/// Our sockets on loopback: two listeners `a` and `b`; `first` and `second` bound to one
/// source port, connected to `a` and `b`; `third` (its own port) connected to `a`; the
/// accepted server sides.
private final class SharedSourceLab {
    let a: LoopbackSocket, b: LoopbackSocket
    let first: LoopbackSocket, second: LoopbackSocket, third: LoopbackSocket
    let servedA: [LoopbackSocket], servedB: LoopbackSocket
    let source: UInt16

    init() throws {
        a = try LoopbackSocket.listener()
        b = try LoopbackSocket.listener()
        first = try reusableClient()
        try first.bind(0)
        source = first.port
        second = try reusableClient()
        try second.bind(source)
        #expect(first.connect(a.port) == 0)
        #expect(second.connect(b.port) == 0)
        third = try LoopbackSocket.tcp()
        #expect(third.connect(a.port) == 0)
        servedA = [try a.accept(), try a.accept()]
        servedB = try b.accept()
    }

    var ports: [UInt16] { [a.port, b.port, source, third.port] }

    /// The second client closes first (its socket stays in TIME_WAIT), then its server side.
    func closeSecondIntoTimeWait() throws {
        second.close()
        var byte: UInt8 = 0
        var pfd = pollfd(fd: servedB.fd, events: Int16(POLLIN), revents: 0)
        #expect(poll(&pfd, 1, 5000) == 1 && recv(servedB.fd, &byte, 1, 0) == 0, "the server never saw the client's FIN")
        servedB.close()
    }
}

/// The row `key` of a snapshot.
private func row(_ snapshot: PortSnapshot, _ key: PortKey) -> PortSummary? {
    snapshot.ports.first { $0.key == key }
}

/// The socket of `snapshot` from local port `local` to peer port `peer` in `state`.
private func socket(_ snapshot: PortSnapshot, _ local: UInt16, _ peer: UInt16,
                    _ state: SocketState = .established) -> [SocketRecord] {
    snapshot.sockets.filter { $0.local.port == local && $0.peer.port == peer && $0.state == state }
}

@Suite(.serialized) struct SharedSourcePortSides {
    /// Two clients on one source port to two listeners, then one of them in TIME_WAIT, then the
    /// other's listener closed (the real case: a TIME_WAIT of an earlier connection beside a
    /// client of a listener that is gone): the clients are counted on the remote rows of the
    /// servers, the source port is never a row, the server sides stay on the servers' rows.
    @Test func clientsSharingASourcePortAreOutgoing() throws {
        let lab = try SharedSourceLab()
        let (a, b, source) = (lab.a.port, lab.b.port, lab.source)
        let remoteA = PortKey(role: .remote, proto: .tcp, port: a), remoteB = PortKey(role: .remote, proto: .tcp, port: b)

        // Both clients established, both listeners there.
        var snapshot = try PortSnapshot.take(options(lab.ports))
        for s in socket(snapshot, source, a) + socket(snapshot, source, b) {
            #expect(snapshot.classifier.key(for: s) == PortKey(role: .remote, proto: .tcp, port: s.peer.port), "\(s)")
        }
        #expect(socket(snapshot, source, a).count == 1 && socket(snapshot, source, b).count == 1)
        #expect(row(snapshot, .local(.tcp, source)) == nil, "the shared source port \(source) became a row")
        #expect(row(snapshot, remoteA)?.connections.established == 2)
        #expect(row(snapshot, remoteB)?.connections.established == 1)
        #expect(row(snapshot, .local(.tcp, a))?.connections.established == 2)
        #expect(row(snapshot, .local(.tcp, b))?.connections.established == 1)

        // The second client closed first: its socket sits in TIME_WAIT on the shared port.
        try lab.closeSecondIntoTimeWait()
        var waited = false
        for _ in 0..<100 where !waited {
            snapshot = try PortSnapshot.take(options(lab.ports))
            waited = !socket(snapshot, source, b, .timeWait).isEmpty && socket(snapshot, b, source, .lastAck).isEmpty
            if !waited { sleepSeconds(0.02) }
        }
        #expect(waited, "no TIME_WAIT from \(source) to \(b)")
        #expect(row(snapshot, .local(.tcp, source)) == nil, "the shared source port \(source) became a row")
        #expect(row(snapshot, remoteA)?.connections.established == 2)
        #expect(row(snapshot, remoteB)?.connections.timeWait == 1)
        #expect(row(snapshot, .local(.tcp, a))?.connections.established == 2)
        #expect(row(snapshot, .local(.tcp, b))?.connections.total == 0)

        // a's listener closes: its two server sides still share its port; its clients are
        // still its clients, the one beside the TIME_WAIT too.
        lab.a.close()
        snapshot = try PortSnapshot.take(options(lab.ports))
        #expect(!snapshot.classifier.isListening(.tcp, a))
        #expect(row(snapshot, .local(.tcp, source)) == nil, "the source port \(source) became a row: \(snapshot.ports.map(\.key))")
        #expect(row(snapshot, remoteA)?.connections.established == 2, "\(snapshot.ports.map(\.key))")
        #expect(row(snapshot, remoteB)?.connections.timeWait == 1)
        #expect(row(snapshot, .local(.tcp, a))?.connections.established == 2)
        #expect(row(snapshot, .local(.tcp, lab.third.port)) == nil)
    }

    /// Sampled, the clients' side is remembered: when both listeners close, the two clients on
    /// the shared port stay on the servers' remote rows, and the server sides on the servers'
    /// rows (the first sample after the close still knows the listeners; the second only the
    /// remembered sides).
    @Test func clientsSharingASourcePortStayOutgoingAfterTheListenersClose() throws {
        let lab = try SharedSourceLab()
        let (a, b, source) = (lab.a.port, lab.b.port, lab.source)
        let sampler = try Sampler(options: options(lab.ports), closedConnections: false)
        try sampler.start()
        lab.a.close()
        lab.b.close()
        for _ in 0..<2 {
            let (snapshot, _) = try sampler.sample()
            #expect(!snapshot.classifier.isListening(.tcp, a) && !snapshot.classifier.isListening(.tcp, b))
            let keys = snapshot.ports.map(\.key)
            #expect(row(snapshot, .local(.tcp, source)) == nil, "the shared source port \(source) became a row: \(keys)")
            #expect(row(snapshot, PortKey(role: .remote, proto: .tcp, port: a))?.connections.established == 2, "\(keys)")
            #expect(row(snapshot, PortKey(role: .remote, proto: .tcp, port: b))?.connections.established == 1, "\(keys)")
            #expect(row(snapshot, .local(.tcp, a))?.connections.established == 2, "\(keys)")
            #expect(row(snapshot, .local(.tcp, b))?.connections.established == 1, "\(keys)")
            #expect(row(snapshot, .local(.tcp, lab.third.port)) == nil, "\(keys)")
        }
    }
}

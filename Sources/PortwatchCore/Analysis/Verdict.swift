/// The answer to "is this port busy?".
public enum Verdict: String, Sendable, Hashable, Codable, CaseIterable {
    /// Nothing holds the port; a bind would succeed.
    case free
    /// Something listens (or, for UDP, is bound), with no connections.
    case listening
    /// Held, with connections.
    case busy
    /// Listening, but the accept queue is full or the SYN backlog is at its limit.
    case overloaded
    /// Remote: a connection was accepted.
    case open
    /// Remote: refused.
    case closed
    /// Remote: no answer before the timeout.
    case filtered
    /// Remote UDP: no answer and no refusal (a silent service, or a firewall dropping).
    case openFiltered = "open|filtered"
    /// Remote: no route, or ICMP unreachable.
    case unreachable

    public init(_ remote: RemoteState) {
        switch remote {
        case .open: self = .open
        case .closed: self = .closed
        case .filtered: self = .filtered
        case .openFiltered: self = .openFiltered
        case .unreachable: self = .unreachable
        }
    }

    public var isLocal: Bool { [.free, .listening, .busy, .overloaded].contains(self) }
}

/// The local verdict for one protocol and port, with the facts behind it.
public struct LocalCheck: Sendable {
    public var proto: TransportProtocol
    public var port: UInt16
    public var verdict: Verdict
    /// The port's summary when anything holds it.
    public var summary: PortSummary?
    /// Sockets lingering in TIME_WAIT, which do not make the port busy.
    public var timeWait: Int
    /// TCP sockets bound to the port without listening or connecting: they make it busy (a
    /// bind would fail) though nothing is served.
    public var boundSockets: Int
}

/// Judges each (protocol, port): free, listening, busy or overloaded, from one snapshot's sockets.
///
/// `busy` means held with live connections; a port held only by TIME_WAIT sockets is `free`,
/// since a server binding with SO_REUSEADDR (as servers do) succeeds.
public func localChecks(ports: [(TransportProtocol, UInt16)], snapshot: PortSnapshot) -> [LocalCheck] {
    var byKey: [UInt32: PortSummary] = [:]
    for summary in snapshot.ports where summary.role == .local {
        byKey[(summary.proto == .tcp ? 0 : 0x1_0000) | UInt32(summary.port)] = summary
    }
    // Sockets whose local port is the port but that aggregation put elsewhere (outgoing).
    var held: [UInt32: ConnectionCounts] = [:]
    var bound: [UInt32: Int] = [:]
    for s in snapshot.sockets where s.isBoundOnly {
        bound[(s.proto == .tcp ? 0 : 0x1_0000) | UInt32(s.local.port), default: 0] += 1
    }
    for s in snapshot.sockets where !s.isListening && !s.isBoundOnly {
        held[(s.proto == .tcp ? 0 : 0x1_0000) | UInt32(s.local.port), default: ConnectionCounts()].add(s.state)
    }
    return ports.map { proto, port in
        let key = (proto == .tcp ? 0 : 0x1_0000) | UInt32(port)
        let summary = byKey[key]
        let counts = held[key] ?? ConnectionCounts()
        let live = counts.total - counts.timeWait
        let verdict: Verdict
        if let summary, summary.listening {
            if summary.overloaded {
                verdict = .overloaded
            } else if summary.connections.total - summary.connections.timeWait > 0 {
                verdict = .busy
            } else {
                verdict = .listening
            }
        } else if live > 0 || bound[key, default: 0] > 0 {
            verdict = .busy
        } else {
            verdict = .free
        }
        return LocalCheck(proto: proto, port: port, verdict: verdict, summary: summary, timeWait: counts.timeWait,
                          boundSockets: bound[key, default: 0])
    }
}

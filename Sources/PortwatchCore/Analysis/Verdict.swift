/// The answer to "is this port busy?".
public enum Verdict: String, Sendable, Hashable, Codable, CaseIterable {
    /// Nothing holds the port; a bind would succeed.
    case free
    /// Something listens (or, for UDP, is bound), with no connections.
    case listening
    /// Held, with connections (or held without listening: bound, or a client's source port).
    case busy
    /// Listening, but the accept queue is full, the SYN backlog at its limit, or drops rising.
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

/// Why a port is `overloaded`: each reason with the counts behind it.
public enum OverloadReason: Sendable, Hashable {
    /// Completed connections waiting for accept() exceed the queue's limit.
    case acceptQueueFull(current: Int, max: Int)
    /// Half-open connections (SYN_RECV) reached the listen backlog.
    case synBacklogFull(synRecv: Int, backlog: Int)
    /// The listener dropped SYNs or handshakes during the window.
    case listenDropsRising(Int)
    /// The bound UDP socket dropped datagrams (receive buffer full) during the window.
    case udpDropsRising(Int)
    /// The kernel sent SYN cookies during the window (system-wide: a SYN queue overflowed).
    case syncookiesSent(Int)
    /// The system's listen overflows/drops rose during the window while this listener's backlog
    /// and drops are unknown (read from /proc/net/tcp, not sock_diag): which port dropped is not
    /// known, so every such listener carries it.
    case systemListenDropsRising(Int)

    /// The snake_case name used in JSON.
    public var name: String {
        switch self {
        case .acceptQueueFull: return "accept_queue_full"
        case .synBacklogFull: return "syn_backlog_full"
        case .listenDropsRising: return "listen_drops_rising"
        case .udpDropsRising: return "udp_drops_rising"
        case .syncookiesSent: return "syncookies_sent"
        case .systemListenDropsRising: return "system_listen_drops_rising"
        }
    }

    /// The reason in an operator's words, with its counts.
    public var message: String {
        switch self {
        case .acceptQueueFull(let c, let m): return "accept queue full (\(c)/\(m))"
        case .synBacklogFull(let n, let b): return "SYN_RECV at the backlog (\(n)/\(b))"
        case .listenDropsRising(let n): return "listen drops rising (+\(n))"
        case .udpDropsRising(let n): return "UDP receive-buffer drops rising (+\(n))"
        case .syncookiesSent(let n): return "syncookies sent (+\(n), system-wide)"
        case .systemListenDropsRising(let n):
            return "listen drops rising (+\(n), system-wide: without sock_diag the port that dropped is unknown)"
        }
    }

    /// The count the reason carries (the current depth for a full queue).
    public var count: Int {
        switch self {
        case .acceptQueueFull(let c, _): return c
        case .synBacklogFull(let n, _): return n
        case .listenDropsRising(let n), .udpDropsRising(let n), .syncookiesSent(let n), .systemListenDropsRising(let n):
            return n
        }
    }

    /// The limit a full queue reached; nil for counters.
    public var limit: Int? {
        switch self {
        case .acceptQueueFull(_, let m): return m
        case .synBacklogFull(_, let b): return b
        default: return nil
        }
    }
}

extension PortSummary {
    /// Why a port is overloaded right now, from its sockets alone (no window): an accept
    /// queue over its limit, or half-open connections at the backlog.
    public var overloadReasons: [OverloadReason] {
        guard proto == .tcp, listening else { return [] }
        var reasons: [OverloadReason] = []
        if let q = acceptQueue, listeners.contains(where: \.acceptQueueFull) {
            reasons.append(.acceptQueueFull(current: q.current, max: q.max ?? 0))
        }
        if listeners.allSatisfy(\.backlogKnown) {
            let backlog = listeners.reduce(0) { $0 + Int($1.backlog) }
            if backlog > 0 && connections.synRecv >= backlog {
                reasons.append(.synBacklogFull(synRecv: connections.synRecv, backlog: backlog))
            }
        }
        return reasons
    }
}

/// The local verdict for one protocol and port, with the facts behind it.
public struct LocalCheck: Sendable {
    public var proto: TransportProtocol
    public var port: UInt16
    public var verdict: Verdict
    /// The port's row when anything holds it (listeners, bound sockets, server connections).
    public var summary: PortSummary?
    /// Whether a listener (TCP LISTEN, or a bound unconnected UDP socket) waits on the port.
    public var listening: Bool
    /// The connections the verdict counted: the listener's when something listens, otherwise
    /// every connection using the port locally (server side or a client's source port).
    public var connections: ConnectionCounts
    /// TCP sockets bound to the port without listening or connecting: they make it busy (a
    /// bind would fail) though nothing is served.
    public var boundSockets: Int
    /// Outgoing connections using the port as their source port (not a server's).
    public var clientConnections: Int
    /// Why the verdict is `overloaded` (empty otherwise).
    public var reasons: [OverloadReason]

    /// Sockets lingering in TIME_WAIT (the same count as `connections.timeWait`).
    public var timeWait: Int { connections.timeWait }

    /// What a caller should know although the verdict stands: a port held only by TIME_WAIT
    /// sockets is free for servers (SO_REUSEADDR), yet a plain bind() fails until they expire.
    public var caveats: [String] {
        guard verdict == .free, timeWait > 0 else { return [] }
        let sockets = timeWait == 1 ? "1 socket" : "\(timeWait) sockets"
        return ["\(sockets) in TIME_WAIT: bind() without SO_REUSEADDR fails until \(timeWait == 1 ? "it expires" : "they expire") (60 s)"]
    }

    /// Whether the verdict meets an expectation: `listening` is met only while something
    /// listens (whatever its load), `busy` by busy or overloaded; the others exactly.
    public func meets(_ expected: Verdict) -> Bool {
        switch expected {
        case .listening: return listening
        case .busy: return verdict == .busy || verdict == .overloaded
        default: return verdict == expected
        }
    }
}

/// Judges each (protocol, port): free, listening, busy or overloaded, from one snapshot's
/// sockets and, when given, the window that ended with it (drops rising during the window
/// make a listening port overloaded). The one rule for `check`, `wait` and the daemon.
///
/// `busy` means held with live connections, or held without a listener (a bound socket, a
/// client's source port): a bind would fail. A port held only by TIME_WAIT sockets is `free`
/// (servers bind with SO_REUSEADDR), with a caveat.
public func localChecks(ports: [(TransportProtocol, UInt16)], snapshot: PortSnapshot,
                        window: WindowReport? = nil) -> [LocalCheck] {
    var byKey: [PortKey: PortSummary] = [:]
    for summary in snapshot.ports where summary.role == .local { byKey[summary.key] = summary }
    let wanted = Set(ports.map { PortKey.local($0.0, $0.1) })
    // Every socket using the port locally, whichever row aggregation gave it.
    var held: [PortKey: ConnectionCounts] = [:]
    var clients: [PortKey: Int] = [:]
    var bound: [PortKey: Int] = [:]
    for s in snapshot.sockets where !s.isListening {
        let key = PortKey.local(s.proto, s.local.port)
        guard wanted.contains(key) else { continue }
        if s.isBoundOnly {
            bound[key, default: 0] += 1
            continue
        }
        held[key, default: ConnectionCounts()].add(s.state)
        if s.state != .timeWait && snapshot.classifier.key(for: s).role == .remote { clients[key, default: 0] += 1 }
    }
    let syncookies = window?.syncookiesSent ?? 0
    return ports.map { proto, port in
        let key = PortKey.local(proto, port)
        let summary = byKey[key]
        let listening = summary?.listening ?? false
        let counts = listening ? summary!.connections : (held[key] ?? ConnectionCounts())
        let boundSockets = bound[key, default: 0]
        var reasons: [OverloadReason] = []
        let verdict: Verdict
        if let summary, listening {
            reasons = overloadReasons(summary, activity: window?.ports[key], syncookies: syncookies,
                                      systemListenDrops: window?.systemListenDrops ?? 0)
            if !reasons.isEmpty {
                verdict = .overloaded
            } else if counts.total - counts.timeWait > 0 {
                verdict = .busy
            } else {
                verdict = .listening
            }
        } else if counts.total - counts.timeWait > 0 || boundSockets > 0 {
            verdict = .busy
        } else {
            verdict = .free
        }
        return LocalCheck(proto: proto, port: port, verdict: verdict, summary: summary, listening: listening,
                          connections: counts, boundSockets: boundSockets,
                          clientConnections: clients[key, default: 0], reasons: reasons)
    }
}

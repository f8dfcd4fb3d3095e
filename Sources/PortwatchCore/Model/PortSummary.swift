/// Connections on a port counted by TCP state.
public struct ConnectionCounts: Sendable, Hashable, Codable {
    public var established = 0
    public var synRecv = 0
    public var synSent = 0
    public var timeWait = 0
    public var closeWait = 0
    /// fin-wait-1, fin-wait-2, closing and last-ack: the connection is being torn down.
    public var finWait = 0
    public var other = 0

    public init() {}

    public var total: Int { established + synRecv + synSent + timeWait + closeWait + finWait + other }

    /// Counts one socket in its state's bucket.
    public mutating func add(_ state: SocketState) {
        switch state.rawValue {
        case 1: established += 1
        case 2: synSent += 1
        case 3, 12: synRecv += 1
        case 6: timeWait += 1
        case 8: closeWait += 1
        case 4, 5, 9, 11: finWait += 1
        default: other += 1
        }
    }

    /// The count for a state given by its name, for `--state` filters and tables.
    public func count(named name: String) -> Int? {
        switch name {
        case "established": return established
        case "syn_recv": return synRecv
        case "syn_sent": return synSent
        case "time_wait": return timeWait
        case "close_wait": return closeWait
        case "fin_wait": return finWait
        case "other": return other
        case "total": return total
        default: return nil
        }
    }

    public static func + (a: ConnectionCounts, b: ConnectionCounts) -> ConnectionCounts {
        var c = a
        c.established += b.established
        c.synRecv += b.synRecv
        c.synSent += b.synSent
        c.timeWait += b.timeWait
        c.closeWait += b.closeWait
        c.finWait += b.finWait
        c.other += b.other
        return c
    }
}

/// One listening socket on a port: its address and its accept queue.
public struct ListenerInfo: Sendable, Hashable {
    public var local: Endpoint
    /// Connections completed and waiting for accept() (TCP); bytes queued (UDP).
    public var acceptQueue: UInt32
    /// The accept queue limit (the listen() backlog, capped by somaxconn); 0 for UDP.
    public var backlog: UInt32
    public var inode: UInt64
    public var uid: UInt32
    /// Packets or SYNs this socket dropped (for TCP listeners: listen overflows and drops).
    public var drops: UInt64

    /// The kernel refuses new connections once the queue exceeds its limit (sk_acceptq_is_full).
    public var acceptQueueFull: Bool { backlogKnown && acceptQueue > backlog }
    /// False when the source could not tell the limit (the /proc/net fallback).
    public var backlogKnown = true
    /// IPV6_V6ONLY of an IPv6 listener; false: dual-stack (accepts IPv4 too); nil: IPv4 or unknown.
    public var v6only: Bool? = nil
}

/// Current and maximum depth of a port's accept queue (summed over its listeners).
public struct QueueDepth: Sendable, Hashable, Codable {
    public var current: Int
    /// nil when unknown (the /proc/net fallback).
    public var max: Int?

    public init(current: Int, max: Int?) {
        self.current = current
        self.max = max
    }
}

/// Everything known about one port: the unit every view (CLI, top, daemon) shows.
public struct PortSummary: Sendable, Hashable {
    /// Whether the port is on this host, or is a remote port our outgoing connections go to.
    public enum Role: String, Sendable, Hashable, Codable {
        /// A port on this host (listening, or holding server-side connections).
        case local
        /// Outgoing connections grouped by the remote port they go to (`ports --all`).
        case remote
    }

    public var proto: TransportProtocol
    public var port: UInt16
    public var role: Role
    public var listeners: [ListenerInfo] = []
    public var connections = ConnectionCounts()
    /// Remote peers (for `.remote` rows): distinct addresses the connections go to.
    public var peers: Set<IPAddress> = []
    /// Lifetime counters of the port's connections as the kernel has them now (`drops`:
    /// receive-buffer drops on connected sockets; the listeners' are `listenDrops`).
    public var traffic = TrafficCounters()
    /// TCP sockets bound to the port that neither listen nor connect (bind() before listen()).
    public var boundSockets = 0
    /// Socket inodes whose owners are this port's processes (listeners, or the connections).
    public var ownerInodes: [UInt64] = []
    public var processes: [ProcessRecord] = []

    public init(proto: TransportProtocol, port: UInt16, role: Role) {
        self.proto = proto
        self.port = port
        self.role = role
    }

    public var listening: Bool { !listeners.isEmpty }

    /// Drops counted on the listeners (TCP: SYNs and handshakes dropped, accept-queue overflows;
    /// UDP: datagrams dropped on the bound socket), over the listeners' lifetime.
    public var listenDrops: UInt64 { listeners.reduce(0) { $0 &+ $1.drops } }

    /// Whether any listener's accept queue is over its limit right now.
    public var acceptQueueFull: Bool { proto == .tcp && listeners.contains(where: \.acceptQueueFull) }

    /// Listening addresses as ss writes them (`0.0.0.0`, `*` for a dual-stack `::`, `[::]` for an
    /// IPv6-only one, `127.0.0.1`, `fe80::1%eth0`) or, for remote rows, peer addresses.
    public var addresses: [String] {
        switch role {
        case .local:
            var seen = Set<String>()
            return listeners.sorted { $0.local < $1.local }.map { $0.local.listenAddressText(v6only: $0.v6only) }
                .filter { seen.insert($0).inserted }
        case .remote:
            return peers.sorted().map(\.description)
        }
    }

    /// Accept queue summed over listeners; nil for UDP and for ports nobody listens on.
    public var acceptQueue: QueueDepth? {
        guard proto == .tcp, listening else { return nil }
        return QueueDepth(current: listeners.reduce(0) { $0 + Int($1.acceptQueue) },
                          max: listeners.allSatisfy(\.backlogKnown) ? listeners.reduce(0) { $0 + Int($1.backlog) } : nil)
    }

    /// True when any listener's accept queue is full, or half-open connections reach the
    /// backlog (`overloadReasons` says which).
    public var overloaded: Bool { !overloadReasons.isEmpty }
}

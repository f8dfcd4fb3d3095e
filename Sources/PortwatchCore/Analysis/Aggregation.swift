/// The local ephemeral port range (/proc/sys/net/ipv4/ip_local_port_range), used to tell a
/// server-side connection from an outgoing one when its port has no listener.
public struct EphemeralRange: Sendable, Hashable {
    public var range: ClosedRange<UInt16>

    public init(_ range: ClosedRange<UInt16>) { self.range = range }

    /// The running system's range, or Linux's default 32768-60999 when unreadable.
    public static func system() -> EphemeralRange {
        if let text = readFileString("/proc/sys/net/ipv4/ip_local_port_range") {
            let parts = text.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" })
            if parts.count == 2, let lo = UInt16(parts[0]), let hi = UInt16(parts[1]), lo <= hi {
                return EphemeralRange(lo...hi)
            }
        }
        return EphemeralRange(32768...60999)
    }
}

/// Which port row a socket belongs to.
public struct PortKey: Sendable, Hashable, Comparable {
    public var role: PortSummary.Role
    public var proto: TransportProtocol
    public var port: UInt16

    public init(role: PortSummary.Role, proto: TransportProtocol, port: UInt16) {
        self.role = role
        self.proto = proto
        self.port = port
    }

    public static func < (a: PortKey, b: PortKey) -> Bool {
        if a.role != b.role { return a.role == .local }
        if a.proto != b.proto { return a.proto < b.proto }
        return a.port < b.port
    }
}

/// Decides which port a socket is counted under (see `summarizePorts`), so that live sockets
/// and closed ones (destroy events) land on the same rows.
public struct PortClassifier: Sendable {
    /// Listening addresses per (protocol, port).
    private var listening: [UInt32: [IPAddress]] = [:]
    public var ephemeral: EphemeralRange

    public init(sockets: [SocketRecord], ephemeral: EphemeralRange = .system()) {
        self.ephemeral = ephemeral
        addListeners(sockets)
    }

    /// Adds the listeners of another dump (e.g. an unfiltered listeners-only query).
    public mutating func addListeners(_ sockets: [SocketRecord]) {
        for s in sockets where s.isListening {
            let k = Self.raw(s.proto, s.local.port)
            if !(listening[k]?.contains(s.local.address) ?? false) { listening[k, default: []].append(s.local.address) }
        }
    }

    /// Whether a listener on the socket's port could have accepted it: one on a wildcard
    /// address, or on the socket's own local address. A client that merely reuses the port
    /// number on another address (127.0.0.2:P) is not that listener's connection.
    func servedByListener(_ s: SocketRecord) -> Bool {
        guard let addresses = listening[Self.raw(s.proto, s.local.port)] else { return false }
        let local = s.local.address
        let local4 = local.mappedV4 ?? local
        for a in addresses {
            switch a {
            case .v6 where a.isWildcard: return true
            case .v4 where a.isWildcard: if case .v4 = local4 { return true }
            default: if a == local || (a.mappedV4 ?? a) == local4 { return true }
            }
        }
        return false
    }

    @inline(__always) static func raw(_ proto: TransportProtocol, _ port: UInt16) -> UInt32 {
        (proto == .tcp ? 0 : 0x1_0000) | UInt32(port)
    }

    /// Whether something listens on the port.
    public func isListening(_ proto: TransportProtocol, _ port: UInt16) -> Bool {
        listening[Self.raw(proto, port)] != nil
    }

    /// The row of a socket: its local port when that is a server port (or the socket is not
    /// connected to anything), else the remote port.
    public func key(for s: SocketRecord) -> PortKey {
        if s.isListening || s.peer.port == 0 || servedByListener(s)
            || (!ephemeral.range.contains(s.local.port) && ephemeral.range.contains(s.peer.port)) {
            return PortKey(role: .local, proto: s.proto, port: s.local.port)
        }
        return PortKey(role: .remote, proto: s.proto, port: s.peer.port)
    }
}

/// Folds sockets into one summary per port.
///
/// A socket belongs to its local port when something listens there, or when the local port
/// lies outside the ephemeral range while the peer's lies inside (a server-side connection
/// whose listener is gone). Otherwise it is outgoing, and is grouped by remote port only
/// when `includeOutgoing` is set (`ports --all`).
public func summarizePorts(_ sockets: [SocketRecord], includeOutgoing: Bool,
                           ephemeral: EphemeralRange = .system(), classifier given: PortClassifier? = nil) -> [PortSummary] {
    @inline(__always) func key(_ proto: TransportProtocol, _ port: UInt16) -> UInt32 {
        (proto == .tcp ? 0 : 0x1_0000) | UInt32(port)
    }
    var local: [UInt32: PortSummary] = [:]
    var remote: [UInt32: PortSummary] = [:]

    // Pass 1: the listeners define which ports are "ours".
    for s in sockets where s.isListening {
        let k = key(s.proto, s.local.port)
        // Mutate in place (default subscript): copying a summary out would copy its arrays.
        update(&local[k, default: PortSummary(proto: s.proto, port: s.local.port, role: .local)]) { summary in
            summary.listeners.append(ListenerInfo(local: s.local, acceptQueue: s.receiveQueue,
                                                  backlog: s.proto == .tcp ? s.sendQueue : 0,
                                                  inode: s.inode, uid: s.uid, drops: UInt64(s.drops ?? 0),
                                                  backlogKnown: s.queueLimitKnown, v6only: s.v6only))
            if s.inode != 0 { summary.ownerInodes.append(s.inode) }
        }
    }

    // Pass 2: connections, on the row the classifier picks.
    let classifier = given ?? PortClassifier(sockets: sockets, ephemeral: ephemeral)
    for s in sockets where !s.isListening {
        let k = classifier.key(for: s)
        if k.role == .local {
            update(&local[key(s.proto, k.port), default: PortSummary(proto: s.proto, port: k.port, role: .local)]) { summary in
                if !summary.listening && s.inode != 0 { summary.ownerInodes.append(s.inode) }
                if s.isBoundOnly {
                    summary.boundSockets += 1
                } else {
                    account(s, into: &summary)
                }
            }
        } else if includeOutgoing {
            update(&remote[key(s.proto, k.port), default: PortSummary(proto: s.proto, port: k.port, role: .remote)]) { summary in
                summary.peers.insert(s.peer.address)
                if s.inode != 0 { summary.ownerInodes.append(s.inode) }
                account(s, into: &summary)
            }
        }
    }
    var out = Array(local.values)
    out.append(contentsOf: remote.values)
    out.sort { a, b in
        if a.role != b.role { return a.role == .local }
        if a.proto != b.proto { return a.proto < b.proto }
        return a.port < b.port
    }
    return out
}

@inline(__always)
private func update(_ summary: inout PortSummary, _ body: (inout PortSummary) -> Void) {
    body(&summary)
}

@inline(__always)
private func account(_ s: SocketRecord, into summary: inout PortSummary) {
    summary.connections.add(s.state)
    if let tcp = s.tcp {
        summary.bytesReceived &+= s.payloadReceived
        summary.bytesSent &+= s.payloadSent
        summary.packetsReceived &+= UInt64(tcp.segmentsIn)
        summary.packetsSent &+= UInt64(tcp.segmentsOut)
        summary.retransmits &+= UInt64(tcp.totalRetransmits)
    }
    summary.drops &+= UInt64(s.drops ?? 0)
}

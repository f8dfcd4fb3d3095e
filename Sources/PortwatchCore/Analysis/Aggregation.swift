/// The local ephemeral port range (/proc/sys/net/ipv4/ip_local_port_range), used to tell a
/// server-side connection from an outgoing one when its port has no listener.
public struct EphemeralRange: Sendable, Hashable {
    public var range: ClosedRange<UInt16>

    public init(_ range: ClosedRange<UInt16>) { self.range = range }

    /// The range of portwatch's own network namespace, or Linux's default 32768-60999 when
    /// unreadable. Another namespace has its own (`NamespaceKernelSettings`).
    public static func system() -> EphemeralRange {
        readFileString("/proc/sys/net/ipv4/ip_local_port_range").flatMap(parse) ?? .linuxDefault
    }

    /// Linux's default range.
    public static let linuxDefault = EphemeralRange(32768...60999)

    /// The sysctl's text, `LOW<tab>HIGH`; nil when it is not two ordered ports.
    public static func parse(_ text: String) -> EphemeralRange? {
        let parts = text.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" })
        guard parts.count == 2, let lo = UInt16(parts[0]), let hi = UInt16(parts[1]), lo <= hi else { return nil }
        return EphemeralRange(lo...hi)
    }
}

/// A port row's identity packed in 32 bits — role, protocol and port — so it hashes and
/// compares as one integer. Ordering: local rows first, then TCP before UDP, then port.
public struct PortKey: Sendable, Hashable, Comparable, CustomStringConvertible {
    public let rawValue: UInt32

    public init(role: PortSummary.Role = .local, proto: TransportProtocol, port: UInt16) {
        rawValue = (role == .remote ? 0x2_0000 : 0) | (proto == .udp ? 0x1_0000 : 0) | UInt32(port)
    }

    /// The key of a port on this host.
    public static func local(_ proto: TransportProtocol, _ port: UInt16) -> PortKey {
        PortKey(role: .local, proto: proto, port: port)
    }

    public var role: PortSummary.Role { rawValue & 0x2_0000 != 0 ? .remote : .local }
    public var proto: TransportProtocol { rawValue & 0x1_0000 != 0 ? .udp : .tcp }
    public var port: UInt16 { UInt16(truncatingIfNeeded: rawValue) }

    public static func < (a: PortKey, b: PortKey) -> Bool { a.rawValue < b.rawValue }

    /// `tcp/8080`, `tcp/→5432` for a remote row.
    public var description: String { "\(proto.rawValue)/\(role == .remote ? "→" : "")\(port)" }
}

extension PortSummary {
    /// The row's key.
    public var key: PortKey { PortKey(role: role, proto: proto, port: port) }
}

/// A listening address and whether it is IPv6-only.
struct ListenAddress: Sendable, Hashable {
    var address: IPAddress
    var v6only: Bool
}

/// What earlier samples taught about which side of a connection is the server: the listeners
/// of the previous sample (a connection first seen just after its listener closed still
/// belongs to it) and, by socket cookie, the row of each connection a listener decided (it
/// stays there after the listener is gone: a restarting service, `iperf3 -s -1`).
public struct SideMemory: Sendable {
    var listeners: [PortKey: [ListenAddress]] = [:]
    var sides: [UInt64: PortKey] = [:]

    public init() {}

    /// Connections whose side is remembered.
    public var rememberedSockets: Int { sides.count }

    /// Learns from a snapshot's sockets as `classifier` placed them.
    public mutating func learn(_ sockets: [SocketRecord], classifier: PortClassifier) {
        var next: [UInt64: PortKey] = [:]
        for s in sockets where s.cookie != 0 && !s.isListening && !s.isBoundOnly {
            let (key, why) = classifier.decide(s)
            if why == .listener || why == .peerListener || why == .remembered { next[s.cookie] = key }
        }
        sides = next
        listeners = classifier.listening
    }
}

/// Decides which port row a socket is counted under (see `summarizePorts`), so that live
/// sockets and closed ones (destroy events) land on the same rows.
///
/// Listeners, bound UDP sockets and TCP sockets holding a bound port belong to their local
/// port. A connection belongs to its local port (server side) when its local port lies
/// outside the ephemeral range and its peer's inside; when it is remembered there
/// (`SideMemory`); when a listener on its port (now, or at the previous sample) could have
/// accepted it (a wildcard of its family, or its own address; a v6only `[::]` is no wildcard
/// for IPv4). When the ports alone do not tell (both inside or both outside the range), a
/// connection whose peer endpoint a listener of this host could have accepted is that
/// listener's client (outgoing), and otherwise one whose local address and port carry other
/// live connections is a server's. Otherwise it is outgoing, on the row of the remote port.
///
/// connect() gives one source port to connections to different destinations, and TIME_WAIT
/// sockets of earlier connections stay on it: only live connections make an endpoint shared
/// (not TIME_WAIT, nor SYN_SENT, which only a client sends), and a peer's listener outranks
/// sharing.
public struct PortClassifier: Sendable {
    /// Listening addresses per local (protocol, port).
    fileprivate(set) var listening: [PortKey: [ListenAddress]] = [:]
    /// Listeners of the previous sample (from `SideMemory`).
    private var recentListening: [PortKey: [ListenAddress]] = [:]
    private var remembered: [UInt64: PortKey] = [:]
    /// Local endpoints that carry more than one live ambiguous connection (server side).
    private var sharedEndpoints: Set<Endpoint> = []
    public var ephemeral: EphemeralRange

    public init(sockets: [SocketRecord], ephemeral: EphemeralRange = .system(), memory: SideMemory? = nil) {
        self.ephemeral = ephemeral
        if let memory {
            recentListening = memory.listeners
            remembered = memory.sides
        }
        // One pass: the listeners, and the live TCP connections whose ports do not tell their
        // side (a local endpoint carrying several of them is a server's unless `decide` finds
        // a listener for their peers).
        var once = Set<Endpoint>()
        for s in sockets {
            if s.isListening {
                addListener(s)
            } else if s.proto == .tcp && s.peer.port != 0 && Self.isLive(s.state) && ambiguousByPorts(s) {
                if !once.insert(s.local).inserted { sharedEndpoints.insert(s.local) }
            }
        }
    }

    /// Adds the listeners of another dump (e.g. an unfiltered listeners-only query).
    public mutating func addListeners(_ sockets: [SocketRecord]) {
        for s in sockets where s.isListening { addListener(s) }
    }

    private mutating func addListener(_ s: SocketRecord) {
        let k = PortKey.local(s.proto, s.local.port)
        let a = ListenAddress(address: s.local.address, v6only: s.v6only == true)
        if !(listening[k]?.contains(a) ?? false) { listening[k, default: []].append(a) }
    }

    /// Whether something listens on the port.
    public func isListening(_ proto: TransportProtocol, _ port: UInt16) -> Bool {
        listening[PortKey.local(proto, port)] != nil
    }

    /// The row of a socket from a dump: its local port when that is a server port, or the
    /// socket listens or holds a bound port; else the remote port.
    public func key(for s: SocketRecord) -> PortKey { decide(s).0 }

    /// The row of a connection from a destroy event (always in CLOSE), or nil for a socket that
    /// closed unconnected: a bound TCP or UDP socket (no connection), or a blocking connect()
    /// that failed — the kernel disconnects it (peer port 0, peer address kept) before it
    /// closes, so its remote port cannot be known.
    public func key(forClosed s: SocketRecord) -> PortKey? {
        if s.peer.port == 0 { return nil }
        var open = s
        open.state = .established
        return decide(open).0
    }

    /// Why a socket is on its row.
    enum Reason { case holds, remembered, listener, ports, peerListener, shared, outgoing }

    func decide(_ s: SocketRecord) -> (PortKey, Reason) {
        let local = PortKey.local(s.proto, s.local.port)
        if s.isListening || s.isBoundOnly || s.peer.port == 0 { return (local, .holds) }
        let localEphemeral = ephemeral.range.contains(s.local.port)
        let peerEphemeral = ephemeral.range.contains(s.peer.port)
        // The ports first: the common case, and what needs no memory.
        if !localEphemeral && peerEphemeral { return (local, .ports) }
        if !remembered.isEmpty, let k = remembered[s.cookie] { return (k, .remembered) }
        if served(s.proto, s.local, by: listening) || (!recentListening.isEmpty && served(s.proto, s.local, by: recentListening)) {
            return (local, .listener)
        }
        let remote = PortKey(role: .remote, proto: s.proto, port: s.peer.port)
        if localEphemeral != peerEphemeral || s.proto != .tcp { return (remote, .outgoing) }
        // The ports do not tell. Connected to an endpoint a listener here could have accepted:
        // that listener's client, whatever else shares its source port.
        if served(s.proto, s.peer, by: listening) || (!recentListening.isEmpty && served(s.proto, s.peer, by: recentListening)) {
            return (remote, .peerListener)
        }
        if s.state == .synSent || !sharedEndpoints.contains(s.local) { return (remote, .outgoing) }
        return (local, .shared)
    }

    /// A connection that carries traffic or is closing: not TIME_WAIT or CLOSE (what remains of
    /// a connection), nor SYN_SENT (a client's connect).
    private static func isLive(_ state: SocketState) -> Bool {
        state != .timeWait && state != .close && state != .synSent
    }

    private func ambiguousByPorts(_ s: SocketRecord) -> Bool {
        ephemeral.range.contains(s.local.port) == ephemeral.range.contains(s.peer.port)
    }

    /// Whether a listener on the endpoint's port could have accepted a connection to it: one on
    /// a wildcard address of its family (`[::]` also takes IPv4 unless it is v6only), or on the
    /// endpoint's own address. A client that merely reuses the port number on another address
    /// (127.0.0.2:P) is not that listener's connection.
    private func served(_ proto: TransportProtocol, _ endpoint: Endpoint, by table: [PortKey: [ListenAddress]]) -> Bool {
        guard let addresses = table[PortKey.local(proto, endpoint.port)] else { return false }
        let local = endpoint.address
        let local4 = local.mappedV4 ?? local
        let isV4 = !local4.isV6
        for a in addresses {
            switch a.address {
            case .v6 where a.address.isWildcard:
                if !a.v6only || !isV4 { return true }
            case .v4 where a.address.isWildcard:
                if isV4 { return true }
            default:
                if a.address == local || (a.address.mappedV4 ?? a.address) == local4 { return true }
            }
        }
        return false
    }
}

/// Folds sockets into one summary per port.
///
/// A socket belongs to its local port when it listens, holds a bound port, or is the server
/// side of a connection (see `PortClassifier`). Otherwise it is outgoing, and is grouped by
/// remote port only when `includeOutgoing` is set (`ports --all`).
///
/// `ephemeral` is read only when no classifier is given (nil: the running system's range); a
/// default of `.system()` was evaluated at every call and read /proc/sys of portwatch's own
/// namespace even for another namespace's snapshot.
public func summarizePorts(_ sockets: [SocketRecord], includeOutgoing: Bool,
                           ephemeral: EphemeralRange? = nil, classifier given: PortClassifier? = nil) -> [PortSummary] {
    var local: [PortKey: PortSummary] = [:]
    var remote: [PortKey: PortSummary] = [:]

    // Pass 1: the listeners define which ports are "ours".
    for s in sockets where s.isListening {
        let k = PortKey.local(s.proto, s.local.port)
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
    let classifier = given ?? PortClassifier(sockets: sockets, ephemeral: ephemeral ?? .system())
    for s in sockets where !s.isListening {
        let k = classifier.key(for: s)
        if k.role == .local {
            update(&local[k, default: PortSummary(proto: s.proto, port: k.port, role: .local)]) { summary in
                if !summary.listening && s.inode != 0 { summary.ownerInodes.append(s.inode) }
                if s.isBoundOnly {
                    summary.boundSockets += 1
                } else {
                    account(s, into: &summary)
                }
            }
        } else if includeOutgoing {
            update(&remote[k, default: PortSummary(proto: s.proto, port: k.port, role: .remote)]) { summary in
                summary.peers.insert(s.peer.address)
                if s.inode != 0 { summary.ownerInodes.append(s.inode) }
                account(s, into: &summary)
            }
        }
    }
    var out = Array(local.values)
    out.append(contentsOf: remote.values)
    out.sort { $0.key < $1.key }
    return out
}

@inline(__always)
private func update(_ summary: inout PortSummary, _ body: (inout PortSummary) -> Void) {
    body(&summary)
}

@inline(__always)
private func account(_ s: SocketRecord, into summary: inout PortSummary) {
    summary.connections.add(s.state)
    // Field by field, not through TrafficCounters(s): this runs once per socket of a dump.
    if let tcp = s.tcp {
        summary.traffic.bytesReceived &+= s.payloadReceived
        summary.traffic.bytesSent &+= s.payloadSent
        summary.traffic.packetsReceived &+= UInt64(tcp.segmentsIn)
        summary.traffic.packetsSent &+= UInt64(tcp.segmentsOut)
        summary.traffic.retransmits &+= UInt64(tcp.totalRetransmits)
    }
    if let drops = s.drops { summary.traffic.drops &+= UInt64(drops) }
}

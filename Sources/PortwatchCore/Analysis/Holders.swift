/// How a socket holds its local port ("Address already in use — by whom?").
public enum HoldKind: String, Sendable, Hashable, CaseIterable {
    /// A TCP listener.
    case listening
    /// Bound without listening: TCP after bind() (or explicitly bound, then reset), or an
    /// unconnected UDP socket.
    case bound
    /// A connection using the port locally: a server's, or a client's source port.
    case connected

    /// How a socket from a dump holds its port.
    public init(_ s: SocketRecord) {
        if s.proto == .tcp && s.state == .listen {
            self = .listening
        } else if s.isBoundOnly || (s.proto == .udp && s.isListening) {
            self = .bound
        } else {
            self = .connected
        }
    }
}

/// One socket on a port and how it holds it.
public struct HeldSocket: Sendable, Hashable, CustomStringConvertible {
    public var socket: SocketRecord
    public var kind: HoldKind

    /// `tcp 127.0.0.1:8080 listen`, `tcp *:8080 listen` (dual-stack `::`), `tcp 127.0.0.1:8080 bound`,
    /// `tcp 127.0.0.1:8080 -> 127.0.0.1:5432 established`.
    public var description: String {
        let s = socket
        switch kind {
        case .listening: return "\(s.proto.rawValue) \(s.local.listenText(v6only: s.v6only)) listen"
        case .bound: return "\(s.proto.rawValue) \(s.local.listenText(v6only: s.v6only)) bound"
        case .connected: return "\(s.proto.rawValue) \(s.local) -> \(s.peer) \(s.state.name)"
        }
    }
}

/// Everything holding one local port: its sockets and the processes owning them.
public struct PortHolders: Sendable {
    public var proto: TransportProtocol
    public var port: UInt16
    public var sockets: [HeldSocket]
    /// Distinct owning processes, in pid order.
    public var processes: [ProcessRecord]
    /// Socket inode → owning pids.
    public var owners: OwnerTable

    /// A port's holders: its sockets, their owning processes (pid order) and the inode → pids table.
    public init(proto: TransportProtocol, port: UInt16, sockets: [HeldSocket] = [], processes: [ProcessRecord] = [],
                owners: OwnerTable = OwnerTable()) {
        self.proto = proto
        self.port = port
        self.sockets = sockets
        self.processes = processes
        self.owners = owners
    }

    /// The sockets a process holds on the port.
    public func sockets(heldBy pid: Int32) -> [HeldSocket] {
        sockets.filter { (owners[$0.socket.inode] ?? []).contains(pid) }
    }

    /// Sockets whose owner could not be seen.
    public var unattributed: [HeldSocket] { sockets.filter { (owners[$0.socket.inode] ?? []).isEmpty } }
}

/// The holders of the ports asked about, and what could not be seen.
public struct HoldersReport: Sendable {
    /// One entry per (protocol, port) that any socket holds, in port order.
    public var ports: [PortHolders]
    public var notes: [String]
    /// Set when sockets were found whose owners the kernel would not show (another user's
    /// process without root): the question "who holds it" then has no answer.
    public var ownerProblem: PortwatchError? = nil
}

/// The `who` strategy: every process holding a socket on the local ports of `spec`,
/// listening, bound or connected (a client bound to a fixed port, a connected UDP socket).
///
/// For one port, listeners and bound sockets are asked for first — walks of the kernel's
/// short listening and bind tables. Where a listener is found (per protocol), the port's
/// connections are not dumped (a busy server's tens of thousands of them are its own); otherwise every socket on
/// the port is. TIME_WAIT and half-open sockets belong to no process and are left out.
public func findHolders(_ spec: PortSpec, protocols: Set<TransportProtocol>,
                        source: any SocketSource = defaultSocketSource(),
                        procRoot: String = "/proc") throws(PortwatchError) -> HoldersReport {
    var query = SocketQuery(protocols: protocols, withCounters: false)
    var filters: [TransportProtocol: PortFilter] = [:]
    for proto in protocols {
        let ranges = spec.ranges(for: proto)
        if !ranges.isEmpty { filters[proto] = PortFilter(local: ranges) }
    }
    query.ports = filters
    var sockets: [SocketRecord]
    if spec.isSinglePort {
        // LISTEN, CLOSE and TCP_BOUND_INACTIVE (13, Linux 6.10+: bound sockets not in the
        // connection table); for UDP, CLOSE is an unconnected bound socket.
        var held = query
        held.states = SocketQuery.stateMask([.listen, .close]) | (1 << 13)
        sockets = try source.sockets(held)
        // Protocols without a listener on the port: every socket there may be a holder.
        let rest = protocols.subtracting(sockets.filter(\.isListening).map(\.proto))
        if !rest.isEmpty {
            var all = query
            all.protocols = rest
            sockets.removeAll { rest.contains($0.proto) }
            sockets.append(contentsOf: try source.sockets(all))
        }
    } else {
        sockets = try source.sockets(query)
    }
    var byPort: [PortKey: [HeldSocket]] = [:]
    var seen = Set<UInt64>()
    for s in sockets where s.inode != 0 && spec.contains(port: s.local.port, proto: s.proto) {
        // A repeated query can list a socket twice.
        guard seen.insert(s.inode).inserted else { continue }
        byPort[PortKey.local(s.proto, s.local.port), default: []].append(HeldSocket(socket: s, kind: HoldKind(s)))
    }
    var notes = source.notes
    guard !byPort.isEmpty else { return HoldersReport(ports: [], notes: notes) }
    // Every fd of every process: `who` answers "Address already in use — by whom?" in full.
    let scan = ProcessScanner.scan(inodes: seen, procRoot: procRoot, highFdBudget: nil, allHolders: true)
    notes.append(contentsOf: scan.notes)
    let ports = byPort.keys.sorted().map { key -> PortHolders in
        let held = byPort[key]!.sorted { ($0.kind.order, $0.socket.local) < ($1.kind.order, $1.socket.local) }
        var pids = Set<Int32>()
        for h in held { pids.formUnion(scan.owners[h.socket.inode] ?? []) }
        return PortHolders(proto: key.proto, port: key.port, sockets: held,
                           processes: pids.sorted().compactMap { scan.processes[$0] }, owners: scan.owners)
    }
    return HoldersReport(ports: ports, notes: notes, ownerProblem: scan.permissionProblem)
}

extension HoldKind {
    /// Listeners first, then bound sockets, then connections.
    var order: Int {
        switch self {
        case .listening: return 0
        case .bound: return 1
        case .connected: return 2
        }
    }
}

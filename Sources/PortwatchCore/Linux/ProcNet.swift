/// The fallback socket source: /proc/net/{tcp,tcp6,udp,udp6}, for kernels without sock_diag.
/// It lacks tcp_info (no bytes, no rtt) and the accept-queue limit; counts and states are exact.
public struct ProcNetSource: SocketSource {
    public var name: String { "procfs" }
    public var root: String
    /// Why /proc/net is read instead of sock_diag, for the note.
    public var reason: String

    public init(root: String = "/proc/net", reason: String = "sock_diag unavailable") {
        self.root = root
        self.reason = reason
    }

    public var notes: [String] {
        ["\(reason): sockets read from \(root) (no byte counters, no accept-queue limit)"]
    }

    public func sockets(_ query: SocketQuery) throws(PortwatchError) -> [SocketRecord] {
        var out: [SocketRecord] = []
        var anyRead = false
        for proto in TransportProtocol.allCases where query.protocols.contains(proto) {
            for family in AddressFamily.allCases where query.families.contains(family) {
                let file = "\(root)/\(proto.rawValue)\(family == .inet6 ? "6" : "")"
                guard let text = readFileString(file) else { continue }
                anyRead = true
                for record in parseProcNet(text, proto: proto) {
                    guard query.states & (1 << UInt32(record.state.rawValue)) != 0 else { continue }
                    if query.listenersOnly && !record.isListening { continue }
                    if let filters = query.ports {
                        guard let f = filters[proto] else { continue }
                        let keep = f.local.contains { $0.contains(record.local.port) } ||
                            f.peer.contains { $0.contains(record.peer.port) }
                        if !keep { continue }
                    }
                    out.append(record)
                }
            }
        }
        if !anyRead { throw .system("cannot read sockets: neither sock_diag nor \(root) is available") }
        return out
    }
}

/// Parses the text of /proc/net/tcp, tcp6, udp or udp6. Malformed lines are skipped.
public func parseProcNet(_ text: String, proto: TransportProtocol) -> [SocketRecord] {
    var out: [SocketRecord] = []
    for line in text.split(separator: "\n").dropFirst() {
        let fields = line.split(separator: " ", omittingEmptySubsequences: true)
        guard fields.count >= 10,
              let local = parseProcEndpoint(fields[1]),
              let peer = parseProcEndpoint(fields[2]),
              let state = UInt8(fields[3], radix: 16) else { continue }
        let queues = fields[4].split(separator: ":")
        guard queues.count == 2, let tx = UInt32(queues[0], radix: 16), let rx = UInt32(queues[1], radix: 16),
              let uid = UInt32(fields[7]), let inode = UInt64(fields[9]) else { continue }
        var record = SocketRecord(proto: proto, state: SocketState(rawValue: state), local: local, peer: peer,
                                  uid: uid, inode: inode, receiveQueue: rx, sendQueue: tx)
        // /proc/net/tcp shows a listener's queue length but not its limit.
        if proto == .tcp && state == SocketState.listen.rawValue { record.queueLimitKnown = false }
        if proto == .udp, fields.count >= 13, let drops = UInt32(fields[12]) {
            record.drops = drops
        }
        out.append(record)
    }
    return out
}

/// `0100007F:1F90` (IPv4) or 32 hex digits `:PORT` (IPv6); each 32-bit word is printed in
/// the kernel's native byte order, so its bytes in memory are the address in network order.
func parseProcEndpoint(_ field: Substring) -> Endpoint? {
    let parts = field.split(separator: ":")
    guard parts.count == 2, let port = UInt16(parts[1], radix: 16) else { return nil }
    let hex = parts[0]
    func word(_ i: Int) -> UInt32? {
        let start = hex.index(hex.startIndex, offsetBy: i * 8)
        let end = hex.index(start, offsetBy: 8)
        guard let native = UInt32(hex[start..<end], radix: 16) else { return nil }
        return UInt32(bigEndian: native)
    }
    switch hex.count {
    case 8:
        guard let a = word(0) else { return nil }
        return Endpoint(address: .v4(a), port: port)
    case 32:
        guard let a = word(0), let b = word(1), let c = word(2), let d = word(3) else { return nil }
        return Endpoint(address: .v6(UInt64(a) << 32 | UInt64(b), UInt64(c) << 32 | UInt64(d)), port: port)
    default:
        return nil
    }
}

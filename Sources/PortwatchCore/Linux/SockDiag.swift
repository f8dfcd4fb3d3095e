#if canImport(Glibc)
import Glibc
#endif
import CSockDiag

/// What to ask the kernel for.
public struct SocketQuery: Sendable, Hashable {
    public var protocols: Set<TransportProtocol>
    public var families: Set<AddressFamily>
    /// Bitmask of TCP states (1 << state); UDP sockets are filtered by the same mask.
    public var states: UInt32
    /// Kernel-side port filter per protocol; nil keeps every port.
    public var ports: [TransportProtocol: PortFilter]?
    /// Ask for tcp_info and memory info (bytes, segments, rtt, drops).
    public var withCounters: Bool
    /// Only listeners: TCP in LISTEN and unconnected UDP. The kernel then walks only its
    /// listening tables for TCP, not the (possibly huge) established one.
    public var listenersOnly = false

    public init(protocols: Set<TransportProtocol> = [.tcp, .udp],
                families: Set<AddressFamily> = [.inet, .inet6],
                states: UInt32 = SocketState.allStatesMask,
                ports: [TransportProtocol: PortFilter]? = nil,
                withCounters: Bool = true) {
        self.protocols = protocols
        self.families = families
        self.states = states
        self.ports = ports
        self.withCounters = withCounters
    }

    /// Only listening sockets (TCP LISTEN, and UDP sockets in the unconnected "close" state).
    public static func stateMask(_ states: [SocketState]) -> UInt32 {
        states.reduce(0) { $0 | (1 << UInt32($1.rawValue)) }
    }
}

/// Somewhere sockets come from: sock_diag, or /proc/net as a fallback.
public protocol SocketSource: Sendable {
    /// A short name for notes and debugging ("sock_diag", "procfs").
    var name: String { get }
    func sockets(_ query: SocketQuery) throws(PortwatchError) -> [SocketRecord]
}

/// Picks sock_diag, falling back to /proc/net when the kernel lacks it or refuses us.
/// `PORTWATCH_SOCKET_SOURCE=procfs` forces the fallback (used by tests).
public func defaultSocketSource() -> any SocketSource {
    if let forced = getenv("PORTWATCH_SOCKET_SOURCE"), String(cString: forced) == "procfs" {
        return ProcNetSource()
    }
    let fd = socket(AF_NETLINK, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), NETLINK_SOCK_DIAG)
    if fd < 0 { return ProcNetSource() }
    close(fd)
    return SockDiagSource()
}

/// Dumps sockets through NETLINK_SOCK_DIAG (inet_diag), the interface `ss` uses.
public struct SockDiagSource: SocketSource {
    public var name: String { "sock_diag" }
    /// When set, every reply datagram is also appended here (length-prefixed), for fixtures.
    public var recordTo: String?

    public init(recordTo: String? = nil) {
        self.recordTo = recordTo ?? getenv("PORTWATCH_RECORD_NETLINK").map { String(cString: $0) }
    }

    public func sockets(_ query: SocketQuery) throws(PortwatchError) -> [SocketRecord] {
        do {
            return try dump(query)
        } catch let error as SystemCallError {
            throw error.asPortwatchError
        } catch let error as NetlinkError {
            throw PortwatchError.system(error.description)
        } catch {
            throw PortwatchError.system("\(error)")
        }
    }

    /// Set for tests that check the per-family path against the one-walk TCP request.
    nonisolated(unsafe) static var compatUnsupported = false

    private func dump(_ asked: SocketQuery) throws -> [SocketRecord] {
        // IPv4 only (`-4`) still means the IPv6 sockets that serve IPv4: dual-stack listeners
        // (v6only false) and their connections from IPv4 clients (v4-mapped local addresses).
        var query = asked
        let servesIPv4Only = asked.families == [.inet]
        if servesIPv4Only { query.families = [.inet, .inet6] }
        let fd = try syscallRetrying("socket(AF_NETLINK)") {
            socket(AF_NETLINK, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), NETLINK_SOCK_DIAG)
        }
        defer { close(fd) }
        // A larger receive buffer lets the kernel queue more of a big dump between our reads.
        var rcvbuf: Int32 = 4 << 20
        _ = setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, socklen_t(MemoryLayout<Int32>.size))

        var recorder: Int32 = -1
        if let path = recordTo {
            recorder = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        }
        defer { if recorder >= 0 { close(recorder) } }

        var records: [SocketRecord] = []
        // Room for every socket up front (an unfiltered dump of 100,000 sockets would otherwise
        // regrow and copy the array a dozen times).
        records.reserveCapacity(query.ports == nil && !query.listenersOnly ? Self.socketCountHint() : 1024)
        // One reusable buffer; the kernel hands out at most ~32 KiB per datagram.
        var buffer = [UInt8](repeating: 0, count: 256 * 1024)
        var sequence: UInt32 = 1
        for proto in TransportProtocol.allCases where query.protocols.contains(proto) {
            var bytecode: [UInt8]? = nil
            var userFilter: PortFilter? = nil
            if let filters = query.ports {
                guard let filter = filters[proto], !(filter.local.isEmpty && filter.peer.isEmpty) else { continue }
                bytecode = compilePortFilter(filter)
                if bytecode == nil { userFilter = filter }
            }
            // TCP over both families: one TCPDIAG_GETSOCK walk instead of one walk per family
            // (the kernel walks the whole established table each time). nil = both families.
            let bothFamilies = query.families.contains(.inet) && query.families.contains(.inet6)
            var passes: [AddressFamily?] = proto == .tcp && bothFamilies && !Self.compatUnsupported
                ? [nil] : AddressFamily.allCases.filter { query.families.contains($0) }
            while let family = passes.first {
                passes.removeFirst()
                let ext: UInt8 = query.withCounters
                    ? UInt8(1 << (INET_DIAG_INFO - 1) | 1 << (INET_DIAG_SKMEMINFO - 1))
                    : 0
                let states: UInt32 = query.listenersOnly
                    ? SocketQuery.stateMask([proto == .tcp ? .listen : .close]) : query.states
                let request = family.map {
                    buildInetDiagRequest(family: $0, proto: proto, states: states,
                                         extensions: ext, bytecode: bytecode, sequence: sequence)
                } ?? buildTCPDiagRequest(states: states, extensions: ext, bytecode: bytecode, sequence: sequence)
                let start = records.count
                var attempts = 0
                var refused = false
                while true {
                    attempts += 1
                    do {
                        try send(fd: fd, request)
                        try receiveDump(fd: fd, proto: proto, buffer: &buffer, recorder: recorder, into: &records)
                        break
                    } catch let error as NetlinkError where family == nil && error != .interrupted {
                        // A kernel without the one-walk TCP request: ask per family instead.
                        if case .kernel = error {} else { throw error }
                        records.removeSubrange(start...)
                        try drain(fd: fd, buffer: &buffer)
                        refused = true
                        break
                    } catch let error as NetlinkError where error == .interrupted && attempts < 3 {
                        records.removeSubrange(start...)
                        try drain(fd: fd, buffer: &buffer)
                    } catch let error as SystemCallError where error.errno == ENOBUFS && attempts < 3 {
                        // The kernel dropped part of the reply: start this dump again.
                        records.removeSubrange(start...)
                        try drain(fd: fd, buffer: &buffer)
                    }
                }
                sequence &+= 1
                if refused {
                    passes = AddressFamily.allCases.filter { query.families.contains($0) }
                    continue
                }
                if let userFilter {
                    let kept = records[start...].filter { r in
                        userFilter.local.contains { $0.contains(r.local.port) } ||
                            userFilter.peer.contains { $0.contains(r.peer.port) }
                    }
                    records.replaceSubrange(start..., with: kept)
                }
            }
        }
        if query.listenersOnly { records.removeAll { !$0.isListening } }
        if servesIPv4Only {
            records.removeAll { r in
                r.local.address.isV6 && r.local.address.mappedV4 == nil && !(r.isListening && r.v6only == false)
            }
        }
        return records
    }

    /// TCP (including TIME_WAIT) and UDP sockets in use, from /proc/net/sockstat and sockstat6.
    static func socketCountHint() -> Int {
        var total = 64
        for file in ["/proc/net/sockstat", "/proc/net/sockstat6"] {
            guard let text = readFileString(file, limit: 4096) else { continue }
            for line in text.split(separator: "\n") where line.hasPrefix("TCP") || line.hasPrefix("UDP:") || line.hasPrefix("UDP6:") {
                let words = line.split(separator: " ")
                for (i, word) in words.enumerated() where (word == "inuse" || word == "tw") && i + 1 < words.count {
                    total += Int(words[i + 1]) ?? 0
                }
            }
        }
        return min(total, 4_000_000)
    }

    private func send(fd: Int32, _ request: [UInt8]) throws {
        var address = sockaddr_nl()
        address.nl_family = sa_family_t(AF_NETLINK)
        let sent = try request.withUnsafeBytes { raw in
            try withUnsafePointer(to: &address) { ap in
                try ap.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                    try syscallRetrying("sendto(sock_diag)") {
                        sendto(fd, raw.baseAddress, raw.count, 0, sa, socklen_t(MemoryLayout<sockaddr_nl>.size))
                    }
                }
            }
        }
        if sent != request.count { throw SystemCallError("sendto(sock_diag)", errno: EMSGSIZE) }
    }

    private func receiveDump(fd: Int32, proto: TransportProtocol, buffer: inout [UInt8], recorder: Int32,
                             into records: inout [SocketRecord]) throws {
        while true {
            let (count, truncated) = try buffer.withUnsafeMutableBytes { raw -> (Int, Bool) in
                var iov = iovec(iov_base: raw.baseAddress, iov_len: raw.count)
                var header = msghdr()
                return try withUnsafeMutablePointer(to: &iov) { iovp in
                    header.msg_iov = iovp
                    header.msg_iovlen = 1
                    let n = try syscallRetrying("recvmsg(sock_diag)") { recvmsg(fd, &header, 0) }
                    return (n, header.msg_flags & Int32(MSG_TRUNC) != 0)
                }
            }
            if truncated {
                throw NetlinkError.truncated(offset: 0, claimed: buffer.count + 1, available: buffer.count)
            }
            if count == 0 { return }
            let progress = try buffer.withUnsafeBytes { raw in
                let slice = UnsafeRawBufferPointer(rebasing: raw[0..<count])
                if recorder >= 0 {
                    var len = UInt32(count)
                    _ = write(recorder, &len, 4)
                    _ = write(recorder, slice.baseAddress, count)
                }
                return try parseInetDiagDatagram(slice, proto: proto, into: &records)
            }
            if progress == .done { return }
        }
    }

    /// Discards whatever is left of an abandoned dump.
    private func drain(fd: Int32, buffer: inout [UInt8]) throws {
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if n <= 0 { return }
        }
    }
}

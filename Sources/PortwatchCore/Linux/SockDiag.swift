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
    /// What this source cannot tell, for the reader (a fallback's missing counters).
    var notes: [String] { get }
    func sockets(_ query: SocketQuery) throws(PortwatchError) -> [SocketRecord]
    /// The ephemeral port range of the namespace the sockets come from (client ports are drawn
    /// from it, so it tells a client's side of a connection from a service's).
    var ephemeralRange: EphemeralRange { get }
}

extension SocketSource {
    public var notes: [String] { [] }
    /// portwatch's own namespace's range, read now.
    public var ephemeralRange: EphemeralRange { .system() }
}

/// Which socket source to use: the CLI maps `PORTWATCH_SOCKET_SOURCE` and
/// `PORTWATCH_RECORD_NETLINK` to this, so the core reads no environment.
public struct SocketSourceChoice: Sendable, Hashable {
    /// Read /proc/net even where sock_diag works (tests of the fallback).
    public var forceProcfs: Bool
    /// Append every sock_diag reply datagram here (length-prefixed), to record test fixtures.
    public var recordNetlinkTo: String?

    public init(forceProcfs: Bool = false, recordNetlinkTo: String? = nil) {
        self.forceProcfs = forceProcfs
        self.recordNetlinkTo = recordNetlinkTo
    }

    /// sock_diag where the kernel offers it, else /proc/net.
    public static let automatic = SocketSourceChoice()
}

/// Picks sock_diag, falling back to /proc/net (under `procNet`) when the kernel lacks it or
/// refuses us. `openNetlink` is the kernel end (a replayed one in tests).
public func defaultSocketSource(_ choice: SocketSourceChoice = .automatic, procNet: String = "/proc/net",
                                openNetlink: @escaping NetlinkOpener = NetlinkSocket.sockDiag) -> any SocketSource {
    if choice.forceProcfs { return ProcNetSource(root: procNet, reason: "sock_diag not used (the /proc/net source was chosen)") }
    do {
        _ = try openNetlink()
    } catch {
        return ProcNetSource(root: procNet, reason: "sock_diag unavailable (\(error.description))")
    }
    return SockDiagSource(recordTo: choice.recordNetlinkTo, openNetlink: openNetlink)
}

/// Opens the kernel end of a sock_diag conversation.
public typealias NetlinkOpener = @Sendable () throws(SystemCallError) -> any NetlinkTransport

/// The kernel end of a sock_diag conversation; tests replace it to replay recorded replies and
/// make the faults (EINTR, NLM_F_DUMP_INTR, ENOBUFS) a kernel seldom makes on demand.
public protocol NetlinkTransport: AnyObject {
    /// Sends one request datagram.
    func send(_ request: [UInt8]) throws(SystemCallError)
    /// Receives one datagram into `buffer`: its length, and whether it was cut (MSG_TRUNC).
    func receive(into buffer: UnsafeMutableRawBufferPointer) throws(SystemCallError) -> (count: Int, truncated: Bool)
    /// Drops whatever is queued: the rest of an abandoned dump.
    func discardPending()
}

/// A NETLINK_SOCK_DIAG socket; it closes itself when the last reference goes.
public final class NetlinkSocket: NetlinkTransport {
    private let fd: OwnedDescriptor

    /// Opens a NETLINK_SOCK_DIAG socket with a large receive buffer.
    @Sendable public static func sockDiag() throws(SystemCallError) -> any NetlinkTransport {
        try NetlinkSocket()
    }

    public init(receiveBuffer: Int32 = 4 << 20) throws(SystemCallError) {
        fd = OwnedDescriptor(try syscallRetrying("socket(AF_NETLINK)") {
            socket(AF_NETLINK, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), NETLINK_SOCK_DIAG)
        })
        // A larger receive buffer lets the kernel queue more of a big dump between our reads;
        // without it the dump still works, only with more ENOBUFS retries under load.
        var size = receiveBuffer
        _ = try? syscallRetrying("setsockopt(SO_RCVBUF)") {
            setsockopt(fd.raw, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        }
    }

    public func send(_ request: [UInt8]) throws(SystemCallError) {
        var address = sockaddr_nl()
        address.nl_family = sa_family_t(AF_NETLINK)
        let result: Result<Int, SystemCallError> = request.withUnsafeBytes { raw in
            withUnsafePointer(to: &address) { ap in
                ap.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                    Result { () throws(SystemCallError) in
                        try syscallRetrying("sendto(sock_diag)") {
                            sendto(fd.raw, raw.baseAddress, raw.count, 0, sa, socklen_t(MemoryLayout<sockaddr_nl>.size))
                        }
                    }
                }
            }
        }
        let sent = try result.get()
        if sent != request.count { throw SystemCallError("sendto(sock_diag)", errno: EMSGSIZE) }
    }

    public func receive(into buffer: UnsafeMutableRawBufferPointer) throws(SystemCallError) -> (count: Int, truncated: Bool) {
        var iov = iovec(iov_base: buffer.baseAddress, iov_len: buffer.count)
        var header = msghdr()
        let result: Result<Int, SystemCallError> = withUnsafeMutablePointer(to: &iov) { iovp in
            header.msg_iov = iovp
            header.msg_iovlen = 1
            return Result { () throws(SystemCallError) in
                try syscallRetrying("recvmsg(sock_diag)") { recvmsg(fd.raw, &header, 0) }
            }
        }
        return (try result.get(), header.msg_flags & Int32(MSG_TRUNC) != 0)
    }

    public func discardPending() {
        var scratch = [UInt8](repeating: 0, count: 64 * 1024)
        while scratch.withUnsafeMutableBytes({ recv(fd.raw, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }) > 0 {}
    }
}

/// Dumps sockets through NETLINK_SOCK_DIAG (inet_diag), the interface `ss` uses.
public struct SockDiagSource: SocketSource {
    public var name: String { "sock_diag" }
    /// When set, every reply datagram is also appended here (length-prefixed), for fixtures.
    public var recordTo: String?
    /// Opens the kernel end; tests pass a transport that replays datagrams.
    public var openNetlink: NetlinkOpener
    /// Whether the kernel serves the one-walk TCPDIAG_GETSOCK request (a test can say no, to
    /// check the per-family path against it).
    public var oneWalkTCP: Bool
    /// Another namespace's settings and socket counts, read from files opened inside it; nil
    /// reads portwatch's own namespace's.
    public var kernelSettings: NamespaceKernelSettings?

    public init(recordTo: String? = nil, openNetlink: @escaping NetlinkOpener = NetlinkSocket.sockDiag,
                oneWalkTCP: Bool = true, kernelSettings: NamespaceKernelSettings? = nil) {
        self.recordTo = recordTo
        self.openNetlink = openNetlink
        self.oneWalkTCP = oneWalkTCP
        self.kernelSettings = kernelSettings
    }

    public var ephemeralRange: EphemeralRange { kernelSettings?.ephemeralRange ?? .system() }

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

    /// Tries for one dump before giving up on a busy kernel (DUMP_INTR, ENOBUFS).
    static let attemptsPerDump = 3

    private func dump(_ asked: SocketQuery) throws -> [SocketRecord] {
        // IPv4 only (`-4`) still means the IPv6 sockets that serve IPv4: dual-stack listeners
        // (v6only false) and their connections from IPv4 clients (v4-mapped local addresses).
        var query = asked
        let servesIPv4Only = asked.families == [.inet]
        if servesIPv4Only { query.families = [.inet, .inet6] }
        let netlink = try openNetlink()

        let recorder = try recordTo.map { path throws(SystemCallError) in
            try OwnedDescriptor(opening: path, flags: O_WRONLY | O_CREAT | O_APPEND)
        }

        var records: [SocketRecord] = []
        // Room for every socket up front (an unfiltered dump of 100,000 sockets would otherwise
        // regrow and copy the array a dozen times).
        // (Only a TCP dump is ever that big: a UDP-only dump need not read the counts.)
        records.reserveCapacity(query.ports == nil && !query.listenersOnly && query.protocols.contains(.tcp)
                                ? kernelSettings?.socketCountHint ?? Self.socketCountHint() : 1024)
        // One reusable buffer. The kernel hands out at most 32 KiB per dump datagram (netlink caps
        // its dump allocations there), so 64 KiB never truncates; it stays under malloc's mmap
        // threshold and is not zeroed: a 256 KiB zeroed buffer per dump was a fresh mmap, page
        // faults and a memset at every dump, most of a small namespace's cost.
        var buffer = [UInt8](unsafeUninitializedCapacity: 64 * 1024) { _, count in count = 64 * 1024 }
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
            var passes: [AddressFamily?] = proto == .tcp && bothFamilies && oneWalkTCP
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
                        try netlink.send(request)
                        try receiveDump(netlink, proto: proto, buffer: &buffer, recorder: recorder, into: &records)
                        break
                    } catch let error as NetlinkError where family == nil && error != .interrupted {
                        // A kernel without the one-walk TCP request: ask per family instead.
                        if case .kernel = error {} else { throw error }
                        records.removeSubrange(start...)
                        netlink.discardPending()
                        refused = true
                        break
                    } catch let error as NetlinkError where error == .interrupted && attempts < Self.attemptsPerDump {
                        // The socket tables changed under the dump (NLM_F_DUMP_INTR): start again.
                        records.removeSubrange(start...)
                        netlink.discardPending()
                    } catch let error as SystemCallError where error.errno == ENOBUFS && attempts < Self.attemptsPerDump {
                        // The kernel dropped part of the reply: start this dump again.
                        records.removeSubrange(start...)
                        netlink.discardPending()
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
            // A dual-stack socket that listens, or is bound without listening, holds its port
            // for IPv4 too (a bind to 0.0.0.0 on it fails): it belongs to the IPv4 view.
            records.removeAll { r in
                r.local.address.isV6 && r.local.address.mappedV4 == nil
                    && !((r.isListening || r.isBoundOnly) && r.v6only == false)
            }
        } else if asked.families == [.inet6] {
            // An IPv4 client of a dual-stack listener (a v4-mapped local address) is IPv4
            // traffic, which `-4` counts: counted under both, `-4` and `-6` would add up to more
            // connections and bytes than the port has. The listener itself serves both.
            records.removeAll { $0.local.address.mappedV4 != nil }
        }
        return records
    }

    /// TCP (including TIME_WAIT) and UDP sockets in use, from /proc/net/sockstat and sockstat6.
    static func socketCountHint() -> Int {
        socketCountHint(["/proc/net/sockstat", "/proc/net/sockstat6"].compactMap { readFileString($0, limit: 4096) })
    }

    /// The same count from the files' texts (another namespace's, see `NamespaceKernelSettings`).
    static func socketCountHint(_ texts: [String]) -> Int {
        var total = 64
        for text in texts {
            for line in text.split(separator: "\n") where line.hasPrefix("TCP") || line.hasPrefix("UDP:") || line.hasPrefix("UDP6:") {
                let words = line.split(separator: " ")
                for (i, word) in words.enumerated() where (word == "inuse" || word == "tw") && i + 1 < words.count {
                    total += Int(words[i + 1]) ?? 0
                }
            }
        }
        return min(total, 4_000_000)
    }

    private func receiveDump(_ netlink: any NetlinkTransport, proto: TransportProtocol, buffer: inout [UInt8],
                             recorder: OwnedDescriptor?, into records: inout [SocketRecord]) throws {
        while true {
            let (count, truncated) = try buffer.withUnsafeMutableBytes { raw throws(SystemCallError) in
                try netlink.receive(into: raw)
            }
            if truncated {
                throw NetlinkError.truncated(offset: 0, claimed: buffer.count + 1, available: buffer.count)
            }
            if count == 0 { return }
            let progress = try buffer.withUnsafeBytes { raw in
                let slice = UnsafeRawBufferPointer(rebasing: raw[0..<min(count, raw.count)])
                if let recorder {
                    var len = UInt32(slice.count)
                    _ = write(recorder.raw, &len, 4)
                    _ = write(recorder.raw, slice.baseAddress, slice.count)
                }
                return try parseInetDiagDatagram(slice, proto: proto, into: &records)
            }
            if progress == .done { return }
        }
    }
}

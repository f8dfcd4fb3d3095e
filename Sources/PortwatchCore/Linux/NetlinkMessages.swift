import CSockDiag

// Pure parsing and building of sock_diag messages: no sockets here, so every byte layout
// is testable against recorded kernel replies (Tests/PortwatchCoreTests/Fixtures).

/// An address family as sock_diag understands it.
public enum AddressFamily: UInt8, Sendable, Hashable, CaseIterable, Codable {
    case inet = 2   // AF_INET
    case inet6 = 10 // AF_INET6
}

/// What ended one datagram of a dump.
public enum DumpProgress: Sendable, Equatable {
    /// More datagrams follow.
    case more
    /// NLMSG_DONE seen: the dump is complete.
    case done
}

/// Errors in the netlink byte stream itself.
public enum NetlinkError: Error, Sendable, Equatable, CustomStringConvertible {
    /// A message claims more bytes than the datagram holds, or fewer than a header.
    case truncated(offset: Int, claimed: Int, available: Int)
    /// The kernel answered NLMSG_ERROR with this errno.
    case kernel(errno: Int32)
    /// The dump's messages were interrupted (NLM_F_DUMP_INTR); worth retrying.
    case interrupted

    public var description: String {
        switch self {
        case .truncated(let o, let c, let a):
            return "truncated netlink message at byte \(o): claims \(c) bytes, \(a) available"
        case .kernel(let e): return "sock_diag request refused: \(SystemCallError("netlink", errno: e).description)"
        case .interrupted: return "netlink dump was interrupted"
        }
    }
}

let NLMSG_ERROR_TYPE: UInt16 = 2
let NLMSG_DONE_TYPE: UInt16 = 3
let SOCK_DIAG_BY_FAMILY_TYPE: UInt16 = 20
/// The original TCP-only request (struct inet_diag_req), still served by the kernel: it dumps
/// IPv4 and IPv6 sockets in one walk of the socket tables (the family is AF_UNSPEC inside).
let TCPDIAG_GETSOCK_TYPE: UInt16 = 18
let NLM_F_DUMP_INTR_FLAG: UInt16 = 0x10

/// Parses one datagram of an inet_diag dump reply, appending a record per socket.
///
/// Every length is checked against the buffer before reading, so a truncated or hostile
/// reply yields `NetlinkError.truncated`, never an out-of-bounds read.
public func parseInetDiagDatagram(_ buffer: UnsafeRawBufferPointer, proto: TransportProtocol,
                                  into records: inout [SocketRecord]) throws(NetlinkError) -> DumpProgress {
    var offset = 0
    let total = buffer.count
    while offset + 16 <= total {
        let length = Int(buffer.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
        let type = buffer.loadUnaligned(fromByteOffset: offset + 4, as: UInt16.self)
        let flags = buffer.loadUnaligned(fromByteOffset: offset + 6, as: UInt16.self)
        guard length >= 16, offset + length <= total else {
            throw .truncated(offset: offset, claimed: length, available: total - offset)
        }
        if flags & NLM_F_DUMP_INTR_FLAG != 0 { throw .interrupted }
        switch type {
        case NLMSG_DONE_TYPE:
            return .done
        case NLMSG_ERROR_TYPE:
            guard length >= 20 else { throw .truncated(offset: offset, claimed: length, available: total - offset) }
            let code = buffer.loadUnaligned(fromByteOffset: offset + 16, as: Int32.self)
            if code != 0 { throw .kernel(errno: -code) }
        case SOCK_DIAG_BY_FAMILY_TYPE, TCPDIAG_GETSOCK_TYPE:
            let body = UnsafeRawBufferPointer(rebasing: buffer[(offset + 16)..<(offset + length)])
            if let record = try parseInetDiagMessage(body, proto: proto, messageOffset: offset) {
                records.append(record)
            }
        default:
            break
        }
        offset += (length + 3) & ~3
    }
    return .more
}

/// Parses one inet_diag_msg with its attributes; nil for families we do not know.
func parseInetDiagMessage(_ body: UnsafeRawBufferPointer, proto: TransportProtocol,
                          messageOffset: Int) throws(NetlinkError) -> SocketRecord? {
    let msgSize = 72
    guard body.count >= msgSize else {
        throw .truncated(offset: messageOffset, claimed: msgSize + 16, available: body.count + 16)
    }
    let family = body[0]
    let state = body[1]
    let sport = UInt16(bigEndian: body.loadUnaligned(fromByteOffset: 4, as: UInt16.self))
    let dport = UInt16(bigEndian: body.loadUnaligned(fromByteOffset: 6, as: UInt16.self))
    let src: IPAddress
    let dst: IPAddress
    switch family {
    case AddressFamily.inet.rawValue:
        src = .v4(UInt32(bigEndian: body.loadUnaligned(fromByteOffset: 8, as: UInt32.self)))
        dst = .v4(UInt32(bigEndian: body.loadUnaligned(fromByteOffset: 24, as: UInt32.self)))
    case AddressFamily.inet6.rawValue:
        src = .v6(UInt64(bigEndian: body.loadUnaligned(fromByteOffset: 8, as: UInt64.self)),
                  UInt64(bigEndian: body.loadUnaligned(fromByteOffset: 16, as: UInt64.self)))
        dst = .v6(UInt64(bigEndian: body.loadUnaligned(fromByteOffset: 24, as: UInt64.self)),
                  UInt64(bigEndian: body.loadUnaligned(fromByteOffset: 32, as: UInt64.self)))
    default:
        return nil
    }
    let ifindex = body.loadUnaligned(fromByteOffset: 40, as: UInt32.self)
    let cookieLow = UInt64(body.loadUnaligned(fromByteOffset: 44, as: UInt32.self))
    let cookieHigh = UInt64(body.loadUnaligned(fromByteOffset: 48, as: UInt32.self))
    var record = SocketRecord(
        proto: proto,
        state: SocketState(rawValue: state),
        // A link-local address names no host without its interface: keep the zone.
        local: Endpoint(address: src, port: sport, scope: src.isLinkLocal ? ifindex : 0),
        peer: Endpoint(address: dst, port: dport, scope: dst.isLinkLocal ? ifindex : 0),
        uid: body.loadUnaligned(fromByteOffset: 64, as: UInt32.self),
        inode: UInt64(body.loadUnaligned(fromByteOffset: 68, as: UInt32.self)),
        cookie: cookieHigh << 32 | cookieLow,
        receiveQueue: body.loadUnaligned(fromByteOffset: 56, as: UInt32.self),
        sendQueue: body.loadUnaligned(fromByteOffset: 60, as: UInt32.self),
        interfaceIndex: ifindex)

    // Attributes: rtattr {u16 len, u16 type} + payload, 4-byte aligned.
    var offset = msgSize
    while offset + 4 <= body.count {
        let alen = Int(body.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
        let atype = body.loadUnaligned(fromByteOffset: offset + 2, as: UInt16.self) & 0x3fff
        guard alen >= 4, offset + alen <= body.count else {
            throw .truncated(offset: messageOffset + 16 + offset, claimed: alen, available: body.count - offset)
        }
        let payload = UnsafeRawBufferPointer(rebasing: body[(offset + 4)..<(offset + alen)])
        switch atype {
        case UInt16(INET_DIAG_INFO):
            if proto == .tcp, let base = payload.baseAddress {
                var raw = csd_tcp_stats()
                csd_tcp_stats_read(base, payload.count, &raw)
                record.tcp = TCPStats(
                    bytesAcked: raw.bytes_acked, bytesReceived: raw.bytes_received,
                    bytesSent: raw.bytes_sent, bytesRetransmitted: raw.bytes_retrans,
                    segmentsIn: raw.segs_in, segmentsOut: raw.segs_out,
                    totalRetransmits: raw.total_retrans, rttMicros: raw.rtt_us,
                    rttVarMicros: raw.rttvar_us, minRttMicros: raw.min_rtt_us, lost: raw.lost,
                    unacked: raw.unacked, sacked: raw.sacked, congestionWindow: raw.snd_cwnd)
                record.tcp?.hasBytesSent = raw.has_bytes_sent != 0
            }
        case UInt16(INET_DIAG_SKMEMINFO):
            let index = Int(SK_MEMINFO_DROPS)
            if payload.count >= (index + 1) * 4 {
                record.drops = payload.loadUnaligned(fromByteOffset: index * 4, as: UInt32.self)
            }
        case UInt16(INET_DIAG_SKV6ONLY):
            // Sent for IPv6 sockets in LISTEN or CLOSE (listeners, bound UDP), unasked.
            if payload.count >= 1 { record.v6only = payload[0] != 0 }
        case UInt16(INET_DIAG_PROTOCOL):
            // Destroy events carry their protocol (TCP and UDP share one subscription).
            if payload.count >= 1 {
                if payload[0] == TransportProtocol.udp.ipProto {
                    record.proto = .udp
                } else if payload[0] == TransportProtocol.tcp.ipProto {
                    record.proto = .tcp
                }
            }
        default:
            break
        }
        offset += (alen + 3) & ~3
    }
    if record.proto == .udp { record.tcp = nil }
    return record
}

/// Builds an inet_diag dump request (nlmsghdr + inet_diag_req_v2 [+ bytecode attribute]).
public func buildInetDiagRequest(family: AddressFamily, proto: TransportProtocol, states: UInt32,
                                 extensions: UInt8, bytecode: [UInt8]?, sequence: UInt32) -> [UInt8] {
    var request = DumpRequest(type: SOCK_DIAG_BY_FAMILY_TYPE, bodyLength: 56, bytecode: bytecode, sequence: sequence)
    // inet_diag_req_v2
    request.out.append(family.rawValue)
    request.out.append(proto.ipProto)
    request.out.append(extensions)
    request.out.append(0)
    request.put32(states)
    request.putAnySocket()
    return request.finish()
}

/// The parts every dump request shares: the netlink header, a socket id matching any socket,
/// and the optional bytecode attribute.
private struct DumpRequest {
    var out: [UInt8] = []
    let bytecode: [UInt8]?

    init(type: UInt16, bodyLength: Int, bytecode: [UInt8]?, sequence: UInt32) {
        self.bytecode = bytecode
        let total = 16 + bodyLength + (bytecode.map { 4 + $0.count } ?? 0)
        out.reserveCapacity(total)
        put32(UInt32(total))
        put16(type)
        put16(UInt16(NLM_F_REQUEST | NLM_F_DUMP))
        put32(sequence)
        put32(0)
    }

    mutating func put32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
    mutating func put16(_ v: UInt16) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }

    /// inet_diag_sockid: ports, addresses, ifindex all zero; cookie "none".
    mutating func putAnySocket() {
        out.append(contentsOf: [UInt8](repeating: 0, count: 40))
        put32(0xffff_ffff)
        put32(0xffff_ffff)
    }

    mutating func finish() -> [UInt8] {
        if let bytecode {
            put16(UInt16(4 + bytecode.count))
            put16(UInt16(INET_DIAG_REQ_BYTECODE))
            out.append(contentsOf: bytecode)
        }
        return out
    }
}

/// Builds a TCPDIAG_GETSOCK dump request (nlmsghdr + inet_diag_req [+ bytecode]): TCP sockets
/// of both families in one walk, where SOCK_DIAG_BY_FAMILY needs one walk per family.
public func buildTCPDiagRequest(states: UInt32, extensions: UInt8, bytecode: [UInt8]?, sequence: UInt32) -> [UInt8] {
    var request = DumpRequest(type: TCPDIAG_GETSOCK_TYPE, bodyLength: 60, bytecode: bytecode, sequence: sequence)
    // inet_diag_req: family (ignored by the dump), src/dst prefix lengths, extensions.
    request.out.append(contentsOf: [0, 0, 0, extensions])
    request.putAnySocket()
    request.put32(states)
    request.put32(0)  // idiag_dbs
    return request.finish()
}

/// Which ports a kernel-side filter keeps.
public struct PortFilter: Sendable, Hashable {
    /// Local (source) port ranges to keep.
    public var local: [ClosedRange<UInt16>]
    /// Also keep sockets whose peer (destination) port is in these ranges.
    public var peer: [ClosedRange<UInt16>]

    public init(local: [ClosedRange<UInt16>], peer: [ClosedRange<UInt16>] = []) {
        self.local = local
        self.peer = peer
    }
}

/// Compiles a port filter to inet_diag bytecode: an OR of `lo <= port <= hi` clauses.
///
/// Each clause is GE, LE, JMP (20 bytes): a failed comparison jumps to the next clause, a
/// match falls through to a JMP to the end (accept); the last clause's failure jumps past
/// the end (reject). Jumps follow the kernel's audit rules (multiples of 4, on op
/// boundaries). Returns nil when the filter is too large for 16-bit jumps: the caller
/// then filters in user space.
public func compilePortFilter(_ filter: PortFilter) -> [UInt8]? {
    typealias Clause = (ge: UInt8, le: UInt8, range: ClosedRange<UInt16>)
    let sourceGE = UInt8(INET_DIAG_BC_S_GE), sourceLE = UInt8(INET_DIAG_BC_S_LE)
    let destGE = UInt8(INET_DIAG_BC_D_GE), destLE = UInt8(INET_DIAG_BC_D_LE)
    var clauses: [Clause] = []
    for range in filter.local { clauses.append((sourceGE, sourceLE, range)) }
    for range in filter.peer { clauses.append((destGE, destLE, range)) }
    if clauses.isEmpty { return nil }
    let clauseSize = 20
    let total = clauses.count * clauseSize
    guard total + 4 <= Int(UInt16.max) else { return nil }
    var out: [UInt8] = []
    out.reserveCapacity(total)
    func op(_ code: UInt8, yes: UInt8, no: Int) {
        out.append(code)
        out.append(yes)
        withUnsafeBytes(of: UInt16(no).littleEndian) { out.append(contentsOf: $0) }
    }
    func portOp(_ port: UInt16) {
        out.append(0)
        out.append(0)
        withUnsafeBytes(of: port.littleEndian) { out.append(contentsOf: $0) }
    }
    for (i, clause) in clauses.enumerated() {
        let start = i * clauseSize
        let nextClause = start + clauseSize
        let isLast = i == clauses.count - 1
        // On failure: the next clause, or past the end (total + 4) to reject.
        let failTarget = isLast ? total + 4 : nextClause
        op(clause.ge, yes: 8, no: failTarget - start)
        portOp(clause.range.lowerBound)
        op(clause.le, yes: 8, no: failTarget - (start + 8))
        portOp(clause.range.upperBound)
        // Matched: jump to the very end (accept).
        op(UInt8(INET_DIAG_BC_JMP), yes: 4, no: total - (start + 16))
    }
    return out
}

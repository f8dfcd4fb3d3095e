#if canImport(Glibc)
import Glibc
#endif

/// The transport protocol of a socket or a port.
public enum TransportProtocol: String, Sendable, Codable, CaseIterable, Hashable, Comparable {
    case tcp, udp

    public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }

    /// The IPPROTO_ number.
    public var ipProto: UInt8 { self == .tcp ? UInt8(IPPROTO_TCP) : UInt8(IPPROTO_UDP) }
}

/// An IPv4 or IPv6 address, stored in network byte order.
public enum IPAddress: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// Bytes a.b.c.d packed big-endian (a is the top byte).
    case v4(UInt32)
    /// The 16 bytes as two big-endian halves.
    case v6(UInt64, UInt64)

    public static let anyV4 = IPAddress.v4(0)
    public static let anyV6 = IPAddress.v6(0, 0)

    public var isV6: Bool { if case .v6 = self { return true } else { return false } }

    /// True for 0.0.0.0 and ::, the wildcard addresses.
    public var isWildcard: Bool {
        switch self {
        case .v4(let a): return a == 0
        case .v6(let h, let l): return h == 0 && l == 0
        }
    }

    /// True for 127.0.0.0/8, ::1 and ::ffff:127.x.
    public var isLoopback: Bool {
        switch self {
        case .v4(let a): return a >> 24 == 127
        case .v6(let h, let l):
            if h == 0 && l == 1 { return true }
            if let m = mappedV4, case .v4(let a) = m { return a >> 24 == 127 }
            return false
        }
    }

    /// For ::ffff:a.b.c.d, the IPv4 address inside; otherwise nil.
    public var mappedV4: IPAddress? {
        if case .v6(let h, let l) = self, h == 0, l >> 32 == 0xffff {
            return .v4(UInt32(truncatingIfNeeded: l))
        }
        return nil
    }

    public static func < (a: IPAddress, b: IPAddress) -> Bool {
        switch (a, b) {
        case (.v4(let x), .v4(let y)): return x < y
        case (.v4, .v6): return true
        case (.v6, .v4): return false
        case (.v6(let h1, let l1), .v6(let h2, let l2)): return h1 != h2 ? h1 < h2 : l1 < l2
        }
    }

    /// Builds an address from 4 or 16 bytes in network order.
    public init?(bytes: UnsafeRawBufferPointer) {
        if bytes.count == 4 {
            self = .v4(UInt32(bigEndian: bytes.loadUnaligned(as: UInt32.self)))
        } else if bytes.count == 16 {
            self = .v6(UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: 0, as: UInt64.self)),
                       UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: 8, as: UInt64.self)))
        } else {
            return nil
        }
    }

    /// Parses a numeric IPv4 or IPv6 literal (no brackets, no names).
    public init?(_ text: String) {
        var v4 = in_addr()
        var v6 = in6_addr()
        if text.contains(":") {
            guard inet_pton(AF_INET6, text, &v6) == 1 else { return nil }
            self = withUnsafeBytes(of: &v6) { IPAddress(bytes: $0)! }
        } else {
            guard inet_pton(AF_INET, text, &v4) == 1 else { return nil }
            self = withUnsafeBytes(of: &v4) { IPAddress(bytes: $0)! }
        }
    }

    /// The 4 or 16 bytes in network order.
    public var bytes: [UInt8] {
        switch self {
        case .v4(let a): return withUnsafeBytes(of: a.bigEndian) { Array($0) }
        case .v6(let h, let l):
            return withUnsafeBytes(of: h.bigEndian) { Array($0) } + withUnsafeBytes(of: l.bigEndian) { Array($0) }
        }
    }

    public var description: String {
        switch self {
        case .v4(let a):
            return "\(a >> 24).\((a >> 16) & 0xff).\((a >> 8) & 0xff).\(a & 0xff)"
        case .v6:
            var raw = bytes
            var out = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
            _ = raw.withUnsafeMutableBytes { inet_ntop(AF_INET6, $0.baseAddress, &out, socklen_t(out.count)) }
            return String(cString: out)
        }
    }
}

/// An address and a port.
public struct Endpoint: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var address: IPAddress
    public var port: UInt16
    /// The interface index a link-local address belongs to (its zone); 0 for every other address.
    public var scope: UInt32 = 0

    public init(address: IPAddress, port: UInt16, scope: UInt32 = 0) {
        self.address = address
        self.port = port
        self.scope = scope
    }

    public static func < (a: Endpoint, b: Endpoint) -> Bool {
        a.address != b.address ? a.address < b.address : a.port < b.port
    }

    /// `1.2.3.4:80`, `0.0.0.0:80`, `[::1]:80`, `[fe80::1%eth0]:80` (a dual-stack listener's
    /// `*:80` needs the socket's v6only: `listenText(v6only:)`).
    public var description: String {
        address.isV6 ? "[\(addressText)]:\(port)" : "\(address):\(port)"
    }
}

/// A socket state as the kernel numbers it (TCP_ESTABLISHED = 1 ... TCP_NEW_SYN_RECV = 12).
public struct SocketState: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
    public var rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    public static let established = SocketState(rawValue: 1)
    public static let synSent = SocketState(rawValue: 2)
    public static let synRecv = SocketState(rawValue: 3)
    public static let finWait1 = SocketState(rawValue: 4)
    public static let finWait2 = SocketState(rawValue: 5)
    public static let timeWait = SocketState(rawValue: 6)
    public static let close = SocketState(rawValue: 7)
    public static let closeWait = SocketState(rawValue: 8)
    public static let lastAck = SocketState(rawValue: 9)
    public static let listen = SocketState(rawValue: 10)
    public static let closing = SocketState(rawValue: 11)
    public static let newSynRecv = SocketState(rawValue: 12)

    /// Bitmask of every state, for inet_diag's idiag_states.
    public static let allStatesMask: UInt32 = 0xffff_ffff

    /// The operator's name for the state (snake_case, as in JSON).
    public var name: String {
        switch rawValue {
        case 1: return "established"
        case 2: return "syn_sent"
        case 3, 12: return "syn_recv"
        case 4: return "fin_wait1"
        case 5: return "fin_wait2"
        case 6: return "time_wait"
        case 7: return "close"
        case 8: return "close_wait"
        case 9: return "last_ack"
        case 10: return "listen"
        case 11: return "closing"
        default: return "unknown_\(rawValue)"
        }
    }

    /// Parses a state name as users type it (`established`, `syn-recv`, `time_wait`, `listen`...).
    public init?(name: String) {
        let n = name.lowercased().replacing("-", with: "_")
        let all: [SocketState] = [.established, .synSent, .synRecv, .finWait1, .finWait2, .timeWait,
                                  .close, .closeWait, .lastAck, .listen, .closing]
        guard let s = all.first(where: { $0.name == n }) ?? (n == "unconn" || n == "bound" ? .close : nil)
        else { return nil }
        self = s
    }

    public var description: String { name }
}

/// Counters from the kernel's tcp_info for one TCP socket.
public struct TCPStats: Sendable, Hashable {
    /// Payload bytes the peer acknowledged (what we sent, delivered).
    public var bytesAcked: UInt64
    /// Payload bytes received.
    public var bytesReceived: UInt64
    /// Payload bytes sent including retransmissions (kernel 4.19+).
    public var bytesSent: UInt64
    public var bytesRetransmitted: UInt64
    public var segmentsIn: UInt32
    public var segmentsOut: UInt32
    public var totalRetransmits: UInt32
    /// Smoothed round-trip time in microseconds.
    public var rttMicros: UInt32
    public var rttVarMicros: UInt32
    public var minRttMicros: UInt32
    public var lost: UInt32
    public var unacked: UInt32
    public var sacked: UInt32
    public var congestionWindow: UInt32
    /// Whether the kernel's tcp_info carries bytes_sent (Linux 4.19+).
    public var hasBytesSent: Bool = true

    public init(bytesAcked: UInt64 = 0, bytesReceived: UInt64 = 0, bytesSent: UInt64 = 0,
                bytesRetransmitted: UInt64 = 0, segmentsIn: UInt32 = 0, segmentsOut: UInt32 = 0,
                totalRetransmits: UInt32 = 0, rttMicros: UInt32 = 0, rttVarMicros: UInt32 = 0,
                minRttMicros: UInt32 = 0, lost: UInt32 = 0, unacked: UInt32 = 0, sacked: UInt32 = 0,
                congestionWindow: UInt32 = 0) {
        self.bytesAcked = bytesAcked
        self.bytesReceived = bytesReceived
        self.bytesSent = bytesSent
        self.bytesRetransmitted = bytesRetransmitted
        self.segmentsIn = segmentsIn
        self.segmentsOut = segmentsOut
        self.totalRetransmits = totalRetransmits
        self.rttMicros = rttMicros
        self.rttVarMicros = rttVarMicros
        self.minRttMicros = minRttMicros
        self.lost = lost
        self.unacked = unacked
        self.sacked = sacked
        self.congestionWindow = congestionWindow
    }
}

/// One socket as the kernel reports it.
public struct SocketRecord: Sendable, Hashable {
    public var proto: TransportProtocol
    public var state: SocketState
    public var local: Endpoint
    public var peer: Endpoint
    public var uid: UInt32
    public var inode: UInt64
    /// The kernel's socket cookie: a unique id for the socket's lifetime.
    public var cookie: UInt64
    /// Receive queue: bytes waiting (LISTEN: current accept queue length).
    public var receiveQueue: UInt32
    /// Send queue: bytes unsent/unacked (LISTEN: the accept queue limit, the backlog).
    public var sendQueue: UInt32
    public var interfaceIndex: UInt32
    /// tcp_info counters, for TCP sockets the kernel gave them for.
    public var tcp: TCPStats?
    /// Packets the socket dropped (sk_drops: receive buffer full, filter...).
    public var drops: UInt32?
    /// False when the source cannot tell a listener's accept-queue limit (/proc/net fallback).
    public var queueLimitKnown = true
    /// IPV6_V6ONLY of an IPv6 socket (INET_DIAG_SKV6ONLY, reported for listening and bound
    /// sockets): false for a dual-stack socket that also serves IPv4; nil for IPv4 sockets and
    /// where the source cannot tell (/proc/net). A v6only `[::]` socket is no wildcard for IPv4.
    public var v6only: Bool? = nil

    public init(proto: TransportProtocol, state: SocketState, local: Endpoint, peer: Endpoint,
                uid: UInt32 = 0, inode: UInt64 = 0, cookie: UInt64 = 0, receiveQueue: UInt32 = 0,
                sendQueue: UInt32 = 0, interfaceIndex: UInt32 = 0, tcp: TCPStats? = nil, drops: UInt32? = nil) {
        self.proto = proto
        self.state = state
        self.local = local
        self.peer = peer
        self.uid = uid
        self.inode = inode
        self.cookie = cookie
        self.receiveQueue = receiveQueue
        self.sendQueue = sendQueue
        self.interfaceIndex = interfaceIndex
        self.tcp = tcp
        self.drops = drops
    }

    /// Payload bytes received: tcp_info's count less the one the peer's FIN adds, in the states
    /// that follow a received FIN. 0 when the kernel gave no tcp_info (UDP, TIME_WAIT).
    public var payloadReceived: UInt64 {
        guard let t = tcp else { return 0 }
        let finReceived = state == .closeWait || state == .lastAck || state == .closing || state == .timeWait
        return finReceived && t.bytesReceived > 0 ? t.bytesReceived - 1 : t.bytesReceived
    }

    /// Payload bytes sent, first transmissions only (bytes_sent less bytes_retrans, Linux 4.19+);
    /// on older kernels bytes_acked, which also counts SYN and FIN.
    public var payloadSent: UInt64 {
        guard let t = tcp else { return 0 }
        if !t.hasBytesSent { return t.bytesAcked }
        return t.bytesSent - min(t.bytesRetransmitted, t.bytesSent)
    }

    /// A TCP socket that holds its port but neither listens nor is connected: bound before
    /// listen() or connect(), or explicitly bound and then reset. A dump lists a TCP socket in
    /// CLOSE only while it holds a bound port (the kernel's bound-inactive sockets), so a bind
    /// to the port fails though nothing is served. (Destroy events also say CLOSE: they are
    /// classified apart, see `PortClassifier.key(forClosed:)`.)
    public var isBoundOnly: Bool { proto == .tcp && state == .close }

    /// A TCP listener, or an unconnected bound UDP socket: something that waits on its port.
    public var isListening: Bool {
        switch proto {
        case .tcp: return state == .listen
        case .udp: return state == .close && peer.port == 0
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif

// Parsing captured frames: pure functions over bytes, so tests feed them hand-built packets.

/// TCP header flags (the 13th byte of the TCP header).
public struct TCPFlags: OptionSet, Sendable, Hashable {
    public var rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    public static let fin = TCPFlags(rawValue: 0x01)
    public static let syn = TCPFlags(rawValue: 0x02)
    public static let rst = TCPFlags(rawValue: 0x04)
    public static let psh = TCPFlags(rawValue: 0x08)
    public static let ack = TCPFlags(rawValue: 0x10)
    public static let urg = TCPFlags(rawValue: 0x20)
}

/// The source and destination of a packet's transport header.
public struct FlowEnds: Sendable, Hashable {
    public var source: Endpoint
    public var destination: Endpoint
    public init(source: Endpoint, destination: Endpoint) {
        self.source = source
        self.destination = destination
    }
}

/// What a captured frame is, as far as the capture counts it.
public enum CapturedPacket: Sendable, Hashable {
    /// A UDP datagram (whole, or the first fragment: the UDP length field covers the whole
    /// datagram, so `payloadBytes` does too), payload = UDP length − 8.
    case udp(source: Endpoint, destination: Endpoint, payloadBytes: Int)
    /// A TCP segment header (the filter passes SYN and RST segments, and segments without ACK).
    case tcp(source: Endpoint, destination: Endpoint, flags: TCPFlags, sequence: UInt32, acknowledgment: UInt32)
    /// An ICMP "port unreachable" (IPv4 type 3 code 3, ICMPv6 type 1 code 4): `original` is the
    /// quoted datagram's addresses and ports (its destination port is the closed one); `reporter`
    /// is the address that sent the ICMP error.
    case portUnreachable(proto: TransportProtocol, original: FlowEnds, reporter: IPAddress)
}

/// Parses one frame that starts at the network header (IPv4 or IPv6, as AF_PACKET SOCK_DGRAM
/// delivers it; possibly cut short by the snap length). Returns nil for anything that is not a
/// countable UDP, TCP or ICMP port-unreachable packet, including truncated or malformed headers
/// and later IPv4 fragments. Never reads outside `frame`.
public func parseFrame(_ frame: UnsafeRawBufferPointer) -> CapturedPacket? {
    guard let ip = parseIPHeader(frame) else { return nil }
    let l4 = ip.headerLength
    switch ip.proto {
    case 17:  // UDP
        guard frame.count >= l4 + 8 else { return nil }
        let udpLength = Int(frame.be16(l4 + 4))
        guard udpLength >= 8 else { return nil }
        // A whole datagram must fit in its IP packet; a first fragment carries only part of it.
        if !ip.moreFragments && udpLength > ip.payloadLength { return nil }
        return .udp(source: Endpoint(address: ip.source, port: frame.be16(l4)),
                    destination: Endpoint(address: ip.destination, port: frame.be16(l4 + 2)),
                    payloadBytes: udpLength - 8)
    case 6:  // TCP
        guard frame.count >= l4 + 14, ip.payloadLength >= 20 || ip.moreFragments else { return nil }
        guard frame[l4 + 12] >> 4 >= 5 else { return nil }  // data offset below the minimum header
        return .tcp(source: Endpoint(address: ip.source, port: frame.be16(l4)),
                    destination: Endpoint(address: ip.destination, port: frame.be16(l4 + 2)),
                    flags: TCPFlags(rawValue: frame[l4 + 13] & 0x3f),
                    sequence: frame.be32(l4 + 4), acknowledgment: frame.be32(l4 + 8))
    case 1 where !ip.isV6, 58 where ip.isV6:  // ICMP, ICMPv6
        guard frame.count >= l4 + 8 else { return nil }
        let (type, code) = (frame[l4], frame[l4 + 1])
        let portUnreachable = ip.isV6 ? (type == 1 && code == 4) : (type == 3 && code == 3)
        guard portUnreachable else { return nil }
        // The quoted packet: its IP header (same family as the error) and at least its 4 port bytes.
        let quoted = UnsafeRawBufferPointer(rebasing: frame[(l4 + 8)...])
        guard let inner = parseIPHeader(quoted, quoted: true), inner.isV6 == ip.isV6,
              inner.proto == 17 || inner.proto == 6, !inner.laterFragment,
              quoted.count >= inner.headerLength + 4 else { return nil }
        let original = FlowEnds(source: Endpoint(address: inner.source, port: quoted.be16(inner.headerLength)),
                                destination: Endpoint(address: inner.destination, port: quoted.be16(inner.headerLength + 2)))
        return .portUnreachable(proto: inner.proto == 17 ? .udp : .tcp, original: original, reporter: ip.source)
    default:
        return nil
    }
}

/// The parts of an IPv4 or IPv6 header the capture needs.
private struct IPHeader {
    var isV6: Bool
    var headerLength: Int
    /// Bytes after the header according to the header's length field.
    var payloadLength: Int
    var proto: UInt8
    var source: IPAddress
    var destination: IPAddress
    var moreFragments: Bool
    var laterFragment: Bool
}

/// Reads an IP header at the start of `bytes`. Later IPv4 fragments are refused for outer headers
/// (they carry no ports). A `quoted` header (inside an ICMP error) may be followed by less than its
/// length field says, since ICMP quotes only the start of the packet.
private func parseIPHeader(_ bytes: UnsafeRawBufferPointer, quoted: Bool = false) -> IPHeader? {
    guard bytes.count >= 1 else { return nil }
    switch bytes[0] >> 4 {
    case 4:
        let headerLength = Int(bytes[0] & 0x0f) * 4
        guard headerLength >= 20, bytes.count >= headerLength else { return nil }
        let totalLength = Int(bytes.be16(2))
        guard totalLength >= headerLength else { return nil }
        let fragment = bytes.be16(6)
        let laterFragment = fragment & 0x1fff != 0
        if laterFragment && !quoted { return nil }
        return IPHeader(isV6: false, headerLength: headerLength, payloadLength: totalLength - headerLength,
                        proto: bytes[9], source: .v4(bytes.be32(12)), destination: .v4(bytes.be32(16)),
                        moreFragments: fragment & 0x2000 != 0, laterFragment: laterFragment)
    case 6:
        guard bytes.count >= 40 else { return nil }
        return IPHeader(isV6: true, headerLength: 40, payloadLength: Int(bytes.be16(4)), proto: bytes[6],
                        source: .v6(bytes.be64(8), bytes.be64(16)), destination: .v6(bytes.be64(24), bytes.be64(32)),
                        moreFragments: false, laterFragment: false)
    default:
        return nil
    }
}

extension UnsafeRawBufferPointer {
    // Callers check bounds first; these are plain big-endian loads.
    @inline(__always) fileprivate func be16(_ offset: Int) -> UInt16 {
        UInt16(bigEndian: loadUnaligned(fromByteOffset: offset, as: UInt16.self))
    }
    @inline(__always) fileprivate func be32(_ offset: Int) -> UInt32 {
        UInt32(bigEndian: loadUnaligned(fromByteOffset: offset, as: UInt32.self))
    }
    @inline(__always) fileprivate func be64(_ offset: Int) -> UInt64 {
        UInt64(bigEndian: loadUnaligned(fromByteOffset: offset, as: UInt64.self))
    }
}

#if canImport(Glibc)
import Glibc
#endif
import CSockDiag
import Synchronization

// Optional packet capture (`--capture`): what sock_diag cannot tell.
//  - UDP traffic per local port (UDP sockets have no byte counters in sock_diag), received and sent.
//  - Closed-port hits: TCP SYNs we answered with a RST, UDP datagrams we answered with an ICMP /
//    ICMPv6 port unreachable, per port and per source address (what scans and misconfigured
//    clients look like from here).
//
// An AF_PACKET socket (SOCK_DGRAM, ETH_P_ALL) with a classic BPF filter (CaptureFilter.swift) and a
// TPACKET_V3 memory-mapped ring: the kernel fills blocks of packets, a background thread walks each
// block once it is handed over and gives it back. Parsing is pure (`parseFrame`) so tests feed it
// hand-built packets.

// MARK: - Counters

/// Bytes (UDP payload, from the UDP length field) and packets, each way, for one local port.
public struct TrafficCount: Sendable, Hashable {
    public var bytesReceived: UInt64 = 0
    public var bytesSent: UInt64 = 0
    public var packetsReceived: UInt64 = 0
    public var packetsSent: UInt64 = 0

    public init(bytesReceived: UInt64 = 0, bytesSent: UInt64 = 0, packetsReceived: UInt64 = 0, packetsSent: UInt64 = 0) {
        self.bytesReceived = bytesReceived
        self.bytesSent = bytesSent
        self.packetsReceived = packetsReceived
        self.packetsSent = packetsSent
    }

    public var isZero: Bool { bytesReceived == 0 && bytesSent == 0 && packetsReceived == 0 && packetsSent == 0 }

    /// Field-wise difference, never below zero.
    public func delta(since earlier: TrafficCount) -> TrafficCount {
        TrafficCount(bytesReceived: bytesReceived.saturatingMinus(earlier.bytesReceived),
                     bytesSent: bytesSent.saturatingMinus(earlier.bytesSent),
                     packetsReceived: packetsReceived.saturatingMinus(earlier.packetsReceived),
                     packetsSent: packetsSent.saturatingMinus(earlier.packetsSent))
    }
}

/// A closed port that was hit: the protocol, our port nobody listens on, and who knocked.
public struct ClosedPortKey: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var proto: TransportProtocol
    public var port: UInt16
    public var source: IPAddress

    public init(proto: TransportProtocol, port: UInt16, source: IPAddress) {
        self.proto = proto
        self.port = port
        self.source = source
    }

    public static func < (a: Self, b: Self) -> Bool {
        if a.proto != b.proto { return a.proto < b.proto }
        if a.port != b.port { return a.port < b.port }
        return a.source < b.source
    }

    public var description: String { "\(port)/\(proto.rawValue) from \(source)" }
}

/// Where a captured packet went, as far as local ports are concerned.
public enum PacketDirection: Sendable, Equatable {
    /// Arrived for a local port (PACKET_HOST, broadcast, multicast on a real interface).
    case received
    /// Left from a local port (PACKET_OUTGOING on a real interface).
    case sent
    /// Went over loopback: both ends are local, so it is sent by its source port and received by
    /// its destination port. Only the PACKET_OUTGOING copy is classified so (see `classify`).
    case loopback

    /// ARPHRD_LOOPBACK, the sll_hatype of `lo`.
    public static let loopbackHardwareType: UInt16 = 772

    /// Classifies one captured copy by its sll_pkttype, or nil when it must not be counted.
    ///
    /// Loopback dedupe: on `lo` the kernel's tap sees each packet twice, once as it is transmitted
    /// (PACKET_OUTGOING) and once as it is received back (PACKET_HOST, or broadcast/multicast).
    /// Only the outgoing copy is counted, as `.loopback`, which credits both ends. (The kernel
    /// filter already drops the second copy; this keeps the rule true without it.)
    public static func classify(packetType: UInt8, hardwareType: UInt16) -> PacketDirection? {
        let outgoing: UInt8 = 4  // PACKET_OUTGOING
        if hardwareType == loopbackHardwareType {
            return packetType == outgoing ? .loopback : nil
        }
        switch packetType {
        case 0, 1, 2, 5: return .received  // HOST, BROADCAST, MULTICAST, LOOPBACK (own multicast looped back)
        case outgoing: return .sent
        default: return nil                // OTHERHOST (promiscuous, not ours), USER, KERNEL
        }
    }
}

/// TCP resets counted on one local port.
public struct ResetCount: Sendable, Hashable {
    public var sent: UInt64 = 0
    public var received: UInt64 = 0

    public init(sent: UInt64 = 0, received: UInt64 = 0) {
        self.sent = sent
        self.received = received
    }
}

/// Cumulative capture totals (a snapshot); `delta(since:)` gives the change between two.
public struct CaptureCounters: Sendable, Equatable {
    /// UDP traffic per local port.
    public var udp: [UInt16: TrafficCount] = [:]
    /// Closed-port hits per (protocol, port, source address).
    public var closedPortHits: [ClosedPortKey: UInt64] = [:]
    /// TCP resets of real connections (not answers to a SYN on a closed port) per local port:
    /// `.sent` counts resets this host sent from the port, `.received` those that arrived at it.
    public var resets: [UInt16: ResetCount] = [:]
    /// Hits not given their own key because `closedPortHits` reached its size limit (a scan from
    /// very many addresses); they still count here so nothing vanishes silently.
    public var closedPortHitsUntracked: UInt64 = 0
    /// Packets the capture thread read from the ring (after the kernel filter and loopback dedupe).
    public var packetsSeen: UInt64 = 0
    /// Packets the kernel could not put in the ring (it was full): counts are low by about this.
    public var kernelDrops: UInt64 = 0
    /// Errors the kernel reported on the capture socket (e.g. ENETDOWN while the bound interface
    /// was down: the counts may have a gap), and the last one's text.
    public var socketErrors: UInt64 = 0
    public var lastSocketError: String?

    /// The most distinct closed-port keys kept (memory stays bounded under a spoofed scan).
    public static let closedPortKeyLimit = 65_536

    public init() {}

    /// Total closed-port hits, for one protocol or all.
    public func closedPortHitTotal(proto: TransportProtocol? = nil) -> UInt64 {
        var total: UInt64 = proto == nil ? closedPortHitsUntracked : 0
        for (key, n) in closedPortHits where proto == nil || key.proto == proto { total &+= n }
        return total
    }

    /// What changed since an earlier snapshot of the same capture (entries with no change left out).
    public func delta(since earlier: CaptureCounters) -> CaptureCounters {
        var out = CaptureCounters()
        for (port, now) in udp {
            let change = now.delta(since: earlier.udp[port] ?? TrafficCount())
            if !change.isZero { out.udp[port] = change }
        }
        for (key, now) in closedPortHits {
            let change = now.saturatingMinus(earlier.closedPortHits[key] ?? 0)
            if change > 0 { out.closedPortHits[key] = change }
        }
        for (port, now) in resets {
            let before = earlier.resets[port] ?? ResetCount()
            let change = ResetCount(sent: now.sent.saturatingMinus(before.sent),
                                    received: now.received.saturatingMinus(before.received))
            if change.sent > 0 || change.received > 0 { out.resets[port] = change }
        }
        out.closedPortHitsUntracked = closedPortHitsUntracked.saturatingMinus(earlier.closedPortHitsUntracked)
        out.packetsSeen = packetsSeen.saturatingMinus(earlier.packetsSeen)
        out.kernelDrops = kernelDrops.saturatingMinus(earlier.kernelDrops)
        out.socketErrors = socketErrors.saturatingMinus(earlier.socketErrors)
        out.lastSocketError = out.socketErrors > 0 ? lastSocketError : nil
        return out
    }

    /// Counts one parsed packet seen going `direction`.
    ///  - UDP: payload bytes and one packet, sent by the source port and/or received by the
    ///    destination port (both for loopback).
    ///  - TCP: a RST+ACK with sequence number 0 that we sent is the kernel's answer to a segment
    ///    without ACK (a SYN) for a port nobody listens on (RFC 793 reset generation: seq 0,
    ///    ack = their ISN + 1); its source port is the closed port, its destination the prober.
    ///  - ICMP port unreachable that we sent: the quoted datagram names the closed port and sender.
    ///  Resets and unreachables that arrive (remote ports closed to us) are not closed-port hits.
    public mutating func record(_ packet: CapturedPacket, direction: PacketDirection) {
        switch packet {
        case .udp(let source, let destination, let payload):
            let bytes = UInt64(payload)
            if direction != .received {
                udp[source.port, default: TrafficCount()].bytesSent &+= bytes
                udp[source.port, default: TrafficCount()].packetsSent &+= 1
            }
            if direction != .sent {
                udp[destination.port, default: TrafficCount()].bytesReceived &+= bytes
                udp[destination.port, default: TrafficCount()].packetsReceived &+= 1
            }
        case .tcp(let source, let destination, let flags, let sequence, _):
            guard flags.contains(.rst), !flags.contains(.syn) else { return }
            if direction != .received, flags.contains(.ack), sequence == 0 {
                hit(ClosedPortKey(proto: .tcp, port: source.port, source: destination.address))
                return
            }
            // A reset of a connection: an abort, or an answer to a stray segment.
            if direction != .received { resets[source.port, default: ResetCount()].sent &+= 1 }
            if direction != .sent { resets[destination.port, default: ResetCount()].received &+= 1 }
        case .portUnreachable(let proto, let original, _):
            guard direction != .received else { return }
            hit(ClosedPortKey(proto: proto, port: original.destination.port, source: original.source.address))
        }
    }

    private mutating func hit(_ key: ClosedPortKey) {
        if let n = closedPortHits[key] {
            closedPortHits[key] = n &+ 1
        } else if closedPortHits.count < Self.closedPortKeyLimit {
            closedPortHits[key] = 1
        } else {
            closedPortHitsUntracked &+= 1
        }
    }
}

// MARK: - Parsing

/// TCP header flags (the 13th byte of the TCP header).
public struct TCPFlags: OptionSet, Sendable, Hashable {
    public var rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    public static let fin = TCPFlags(rawValue: 0x01)
    public static let syn = TCPFlags(rawValue: 0x02)
    public static let rst = TCPFlags(rawValue: 0x04)
    public static let psh = TCPFlags(rawValue: 0x08)
    public static let ack = TCPFlags(rawValue: 0x10)
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
    /// A TCP segment header (the filter passes only SYN and RST segments).
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

extension UInt64 {
    fileprivate func saturatingMinus(_ other: UInt64) -> UInt64 { self >= other ? self - other : 0 }
}

// MARK: - Ring walking

/// Walks one TPACKET_V3 block of `blockSize` bytes and counts every packet in it. Packets whose
/// header or data would lie outside the block are skipped (and end the walk), never read.
func countBlock(_ block: UnsafeRawPointer, blockSize: Int, into counters: inout CaptureCounters) {
    let headerLength = csd_tpacket3_header_length()
    let packets = Int(csd_block_packet_count(block))
    var offset = Int(csd_block_first_offset(block))
    var info = csd_tpacket_info()
    for _ in 0..<packets {
        guard offset > 0, offset + headerLength <= blockSize else { return }
        csd_tpacket_read(block + offset, &info)
        let start = offset + Int(info.net_offset)
        let length = Int(info.snaplen)
        guard start <= blockSize, length <= blockSize - start else { return }
        counters.packetsSeen &+= 1
        if info.protocol == 0x0800 || info.protocol == 0x86dd,
           let direction = PacketDirection.classify(packetType: info.pkttype, hardwareType: info.hatype),
           let packet = parseFrame(UnsafeRawBufferPointer(start: block + start, count: length)) {
            counters.record(packet, direction: direction)
        }
        if info.next_offset == 0 { return }
        offset += Int(info.next_offset)
    }
}

// MARK: - The capture

/// Packet capture on one interface or all: counts UDP traffic per local port and closed-port hits.
///
/// ```swift
/// let capture = try PacketCapture(interface: "lo")   // needs root or CAP_NET_RAW
/// capture.start()
/// let before = capture.snapshot()
/// // ...
/// let change = capture.snapshot().delta(since: before)
/// capture.stop()
/// ```
///
/// Totals are cumulative from `start()`. They lag the wire by up to `retireMilliseconds` (the
/// kernel hands a partly filled ring block over after that long). When the ring is full the kernel
/// drops packets and says so: `kernelDrops`.
///
/// Limits: on every interface at once (nil), a router's forwarded packets count as well, and a
/// bridged or veth path can show one datagram on several interfaces: name an interface for exact
/// numbers. IPv6 packets with extension headers before UDP/TCP/ICMPv6 (including fragments) are
/// not counted. A UDP GSO send shows as one packet (its bytes are exact).
public final class PacketCapture: Sendable {
    // Sendable without @unchecked: every stored property is immutable and Sendable. The state that
    // is not (the mapped ring) lives in `CaptureRing`, which says why sharing it is safe.
    public let interface: String?
    private let ring: CaptureRing

    /// Opens the capture socket, attaches the filter and maps the ring; does not start reading.
    /// - Parameters:
    ///   - interface: an interface name (`lo`, `eth0`), or nil for every interface.
    ///   - ringBytes: ring size (rounded to whole blocks of `blockBytes`); each small packet takes
    ///     about 180 bytes, so the default 4 MiB holds ~23,000 packets of backlog.
    ///   - retireMilliseconds: the longest a packet waits in a partly filled block.
    public init(interface: String? = nil, ringBytes: Int = 4 << 20, blockBytes: Int = 256 << 10,
                retireMilliseconds: UInt32 = 50) throws(PortwatchError) {
        self.interface = interface
        self.ring = try CaptureRing(interface: interface, ringBytes: ringBytes, blockBytes: blockBytes,
                                    retireMilliseconds: retireMilliseconds)
    }

    deinit { ring.stop() }

    /// Starts the background thread that drains the ring into the counters. Idempotent; a stopped
    /// capture stays stopped.
    public func start() { ring.start() }

    /// Cumulative totals since `start()`, with the kernel's drop count brought up to date.
    public func snapshot() -> CaptureCounters { ring.snapshot() }

    /// Stops and joins the thread (packets still in the ring are counted first). Idempotent.
    public func stop() { ring.stop() }

    /// CPU time (user + system) the capture thread has used, in seconds; nil before `start()` or
    /// after `stop()`. The kernel's share of the work (filtering, copying into the ring) is charged
    /// to the threads that send and receive the packets, not to this one.
    public var threadCPUSeconds: Double? { ring.threadCPUSeconds() }
}

/// The socket, its mapped ring and the counters.
private final class CaptureRing: @unchecked Sendable {
    // Safe to share: `fd`, `memory` and the sizes never change after init. The ring memory is read
    // and handed back only by the capture thread (one at a time: `start` creates at most one, and
    // `stop` joins it before the final drain on the stopping thread); it is unmapped in deinit, when
    // no thread can hold a reference. Counters and the thread handle live in Mutexes; the stop flag
    // is an Atomic.
    let fd: Int32
    let memory: UnsafeMutableRawPointer
    let blockSize: Int
    let blockCount: Int
    private let state = Mutex(State())
    private let thread = Mutex(ThreadState.idle)
    private let stopping = Atomic<Bool>(false)

    private struct State {
        var counters = CaptureCounters()
        /// The next block the reader expects the kernel to hand over.
        var nextBlock = 0
    }

    private enum ThreadState {
        case idle
        case running(pthread_t)
        case stopped
    }

    convenience init(interface: String?, ringBytes: Int, blockBytes: Int, retireMilliseconds: UInt32) throws(PortwatchError) {
        let page = max(4096, Int(sysconf(Int32(_SC_PAGESIZE))))
        // Blocks must be whole pages; keep them between one page and 4 MiB, 2...1024 of them.
        let blockSize = min(max(page, (blockBytes + page - 1) / page * page), 4 << 20)
        let blockCount = min(max(2, ringBytes / blockSize), 1024)

        var ifindex: Int32 = 0
        if let interface {
            ifindex = Int32(bitPattern: if_nametoindex(interface))
            if ifindex <= 0 { throw .usage("no such network interface: \(interface)") }
        }
        // Protocol 0: the socket receives nothing until bind() names ETH_P_ALL, after the filter
        // and the ring are in place, so no unfiltered packet is ever queued.
        let fd = socket(AF_PACKET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        if fd < 0 {
            let code = errno
            if code == EPERM || code == EACCES { throw .permission("packet capture needs root or CAP_NET_RAW") }
            throw SystemCallError("socket(AF_PACKET)", errno: code).asPortwatchError(needs: "CAP_NET_RAW")
        }
        func fail(_ call: String, _ code: Int32) -> PortwatchError {
            close(fd)
            return SystemCallError(call, errno: code).asPortwatchError(needs: "CAP_NET_RAW")
        }
        let loopback = if_nametoindex("lo")
        let program = captureFilterProgram(loopbackIndex: loopback == 0 ? nil : loopback)
        let packed = program.packedForKernel
        var rc = packed.withUnsafeBytes { csd_packet_attach_filter(fd, $0.baseAddress, UInt16(program.count)) }
        if rc != 0 { throw fail("setsockopt(SO_ATTACH_FILTER)", -rc) }
        rc = csd_packet_setup_ring(fd, UInt32(blockSize), UInt32(blockCount), 2048, retireMilliseconds)
        if rc != 0 { throw fail("setsockopt(PACKET_RX_RING)", -rc) }
        // The ring's pages are kernel memory (never swapped): no need to lock them.
        let mapped = mmap(nil, blockSize * blockCount, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
        guard let mapped, mapped != MAP_FAILED else { throw fail("mmap(packet ring)", errno) }
        self.init(fd: fd, memory: mapped, blockSize: blockSize, blockCount: blockCount)
        // From here deinit unmaps and closes on failure. ifindex 0 = every interface.
        rc = csd_packet_bind(fd, ifindex)
        if rc != 0 { throw SystemCallError("bind(AF_PACKET)", errno: -rc).asPortwatchError(needs: "CAP_NET_RAW") }
    }

    private init(fd: Int32, memory: UnsafeMutableRawPointer, blockSize: Int, blockCount: Int) {
        self.fd = fd
        self.memory = memory
        self.blockSize = blockSize
        self.blockCount = blockCount
    }

    deinit {
        munmap(memory, blockSize * blockCount)
        close(fd)
    }

    func start() {
        thread.withLock { handle in
            guard case .idle = handle else { return }
            var tid = pthread_t()
            let box = Unmanaged.passRetained(self).toOpaque()
            let rc = pthread_create(&tid, nil, { arg in
                guard let arg else { return nil }
                let ring = Unmanaged<CaptureRing>.fromOpaque(arg).takeRetainedValue()
                ring.readLoop()
                return nil
            }, box)
            if rc == 0 {
                handle = .running(tid)
            } else {
                Unmanaged<CaptureRing>.fromOpaque(box).release()
                handle = .stopped
            }
        }
    }

    func stop() {
        let tid: pthread_t? = thread.withLock { handle in
            defer { handle = .stopped }
            if case .running(let tid) = handle { return tid }
            return nil
        }
        guard let tid else { return }
        stopping.store(true, ordering: .releasing)
        if pthread_equal(tid, pthread_self()) == 0 {
            pthread_join(tid, nil)
            drain(countingInto: true)  // what the kernel handed over while the thread was leaving
        } else {
            pthread_detach(tid)
        }
    }

    func snapshot() -> CaptureCounters {
        state.withLock { s in
            // PACKET_STATISTICS resets on read: add under the lock so no read is lost.
            var packets: UInt64 = 0, drops: UInt64 = 0
            if csd_packet_statistics(fd, &packets, &drops) == 0 { s.counters.kernelDrops &+= drops }
            return s.counters
        }
    }

    func threadCPUSeconds() -> Double? {
        thread.withLock { handle -> Double? in
            guard case .running(let tid) = handle else { return nil }
            var clock = clockid_t()
            guard pthread_getcpuclockid(tid, &clock) == 0 else { return nil }
            var ts = timespec()
            guard clock_gettime(clock, &ts) == 0 else { return nil }
            return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
        }
    }

    private func readLoop() {
        var pfd = pollfd(fd: fd, events: Int16(POLLIN | POLLERR), revents: 0)
        while !stopping.load(ordering: .acquiring) {
            if !drain(countingInto: true) {
                // Nothing ready: sleep until the kernel retires a block (or 100 ms, to see `stop`).
                pfd.revents = 0
                if poll(&pfd, 1, 100) > 0, pfd.revents & Int16(POLLERR) != 0 {
                    // E.g. ENETDOWN when the bound interface goes down (capture resumes when it
                    // comes back up). Reading SO_ERROR clears it, so poll does not spin.
                    var code: Int32 = 0
                    var length = socklen_t(MemoryLayout<Int32>.size)
                    if getsockopt(fd, SOL_SOCKET, SO_ERROR, &code, &length) == 0, code != 0 {
                        let message = SystemCallError("packet capture", errno: code).description
                        state.withLock { s in
                            s.counters.socketErrors &+= 1
                            s.counters.lastSocketError = message
                        }
                    }
                }
            }
        }
    }

    /// Counts (or discards) every block the kernel has handed over, in ring order, and gives each
    /// back. Returns whether any block was ready.
    @discardableResult
    private func drain(countingInto counting: Bool) -> Bool {
        var any = false
        // Bounded: at most one pass over the ring per call.
        for _ in 0..<blockCount {
            let ready: Bool = state.withLock { s in
                let block = memory + s.nextBlock * blockSize
                guard csd_block_ready(block) != 0 else { return false }
                if counting {
                    countBlock(UnsafeRawPointer(block), blockSize: blockSize, into: &s.counters)
                }
                csd_block_release(block)
                s.nextBlock = (s.nextBlock + 1) % blockCount
                return true
            }
            if !ready { break }
            any = true
        }
        return any
    }
}

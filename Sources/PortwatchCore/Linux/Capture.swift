// Optional packet capture (`--capture`): what sock_diag cannot tell.
//  - UDP traffic per local port (UDP sockets have no byte counters in sock_diag), received and sent.
//  - Closed-port hits: TCP SYNs we answered with a RST, UDP datagrams we answered with an ICMP /
//    ICMPv6 port unreachable, per port and per source address (what scans and misconfigured
//    clients look like from here).
//
// An AF_PACKET socket (SOCK_DGRAM, ETH_P_ALL) with a classic BPF filter (CaptureFilter.swift) and a
// TPACKET_V3 memory-mapped ring: the kernel fills blocks of packets, a background thread walks each
// block once it is handed over and gives it back (PacketCapture.swift). Parsing is pure
// (`parseFrame`, CaptureParsing.swift) so tests feed it hand-built packets. This file: the counts.

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

extension UInt64 {
    fileprivate func saturatingMinus(_ other: UInt64) -> UInt64 { self >= other ? self - other : 0 }
}

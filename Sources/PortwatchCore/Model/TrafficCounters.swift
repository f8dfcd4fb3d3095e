/// Counters that only grow while a socket lives — bytes and packets each way, retransmits,
/// drops — summed the same way for one socket, one port's sockets, or one window's growth.
public struct TrafficCounters: Sendable, Hashable {
    public var bytesReceived: UInt64 = 0
    public var bytesSent: UInt64 = 0
    public var packetsReceived: UInt64 = 0
    public var packetsSent: UInt64 = 0
    public var retransmits: UInt64 = 0
    /// Packets dropped (sk_drops: receive buffer full, filters...).
    public var drops: UInt64 = 0

    public init(bytesReceived: UInt64 = 0, bytesSent: UInt64 = 0, packetsReceived: UInt64 = 0,
                packetsSent: UInt64 = 0, retransmits: UInt64 = 0, drops: UInt64 = 0) {
        self.bytesReceived = bytesReceived
        self.bytesSent = bytesSent
        self.packetsReceived = packetsReceived
        self.packetsSent = packetsSent
        self.retransmits = retransmits
        self.drops = drops
    }

    /// The counters of a socket record (payload bytes, segments); nil when the kernel gave
    /// none (TIME_WAIT, SYN_RECV).
    public init?(_ s: SocketRecord) {
        if let tcp = s.tcp {
            bytesReceived = s.payloadReceived
            bytesSent = s.payloadSent
            packetsReceived = UInt64(tcp.segmentsIn)
            packetsSent = UInt64(tcp.segmentsOut)
            retransmits = UInt64(tcp.totalRetransmits)
        } else if s.drops == nil {
            return nil
        }
        drops = UInt64(s.drops ?? 0)
    }

    /// Growth since `earlier`, never negative (a counter that went backwards contributes 0).
    public func growth(since earlier: TrafficCounters) -> TrafficCounters {
        TrafficCounters(bytesReceived: bytesReceived &- min(bytesReceived, earlier.bytesReceived),
                        bytesSent: bytesSent &- min(bytesSent, earlier.bytesSent),
                        packetsReceived: packetsReceived &- min(packetsReceived, earlier.packetsReceived),
                        packetsSent: packetsSent &- min(packetsSent, earlier.packetsSent),
                        retransmits: retransmits &- min(retransmits, earlier.retransmits),
                        drops: drops &- min(drops, earlier.drops))
    }

    /// Adds counters (wrapping, as the kernel's do).
    public static func += (a: inout TrafficCounters, b: TrafficCounters) {
        a.bytesReceived &+= b.bytesReceived
        a.bytesSent &+= b.bytesSent
        a.packetsReceived &+= b.packetsReceived
        a.packetsSent &+= b.packetsSent
        a.retransmits &+= b.retransmits
        a.drops &+= b.drops
    }

    /// Every counter is zero.
    public var isZero: Bool { self == TrafficCounters() }
}

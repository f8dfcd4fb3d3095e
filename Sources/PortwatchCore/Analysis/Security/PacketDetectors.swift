/// SYNs that reached one local port during a window, and from whom.
public struct SynTally: Sendable, Hashable {
    public var total: UInt64 = 0
    /// Per source, up to `sourceLimit` sources; the rest are only in `total`.
    public var sources: [IPAddress: UInt64] = [:]

    public static let sourceLimit = 1024

    public init() {}

    mutating func add(_ source: IPAddress) {
        total &+= 1
        if let n = sources[source] {
            sources[source] = n &+ 1
        } else if sources.count < Self.sourceLimit {
            sources[source] = 1
        }
    }

    /// The busiest sources, most first.
    public func top(_ n: Int) -> [SourceCount] {
        sources.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }
            .prefix(n).map { SourceCount(address: $0.key, count: $0.value) }
    }
}

/// What the packet side of the detectors hands over at each sample.
public struct PacketFindings: Sendable {
    /// Scans and storms that started or ended since the last drain.
    public var events: [SecurityEvent] = []
    /// Scans and storms going on.
    public var active: [SecurityEvent] = []
    /// Inbound SYNs per local port since the last drain (for the flood detector's rate and sources).
    public var syns: [UInt16: SynTally] = [:]
    public var untracked: UInt64 = 0

    public init() {}
}

/// The detectors that read packets, fed by the capture thread one packet at a time (with the
/// kernel's timestamp) and drained at each sample. Decides which packets are probes:
///  - TCP arriving without ACK: a SYN is a connection attempt (connect and half-open scans, and a
///    storm when repeated); a bare FIN, no flags, or FIN+PSH+URG are stealth scan probes. Segments
///    with ACK or RST (answers to our own connections and scans) never count.
///  - UDP arriving at a port this host did not just send from to that address (a reply to our own
///    query is not a probe), and ICMP port unreachable this host sent (the quoted datagram names the
///    prober and the closed port).
///  - Packets this host sends count for nothing: scanning another host from here is not being scanned.
///  - Loopback packets (between this host's own addresses) count for no scan and no storm: local
///    agents reach many local ports and reconnect often (a Prometheus scraping twenty local
///    exporters, an app without a connection pool). Their SYNs still count toward a flood.
public struct PacketDetectors: Sendable {
    public var settings: DetectorSettings
    private var scans: PortScanDetector
    private var storms: ConnectionStormDetector
    private var syns: [UInt16: SynTally] = [:]
    private var outgoingUDP = RecentFlows()

    public init(settings: DetectorSettings) {
        self.settings = settings
        scans = PortScanDetector(threshold: settings.scanPorts, window: settings.scanWindow)
        storms = ConnectionStormDetector(threshold: settings.stormConnections, window: settings.stormWindow)
    }

    /// One parsed packet, seen going `direction` at `time` (seconds since the epoch).
    public mutating func observe(_ packet: CapturedPacket, direction: PacketDirection, time: Double) {
        switch packet {
        case .tcp(let source, let destination, let flags, _, _):
            guard direction != .sent, !flags.contains(.ack), !flags.contains(.rst) else { return }
            let remote = direction == .received
            if flags.contains(.syn) {
                if settings.portScan && remote { scans.observe(source: source.address, port: destination.port, kind: .syn, time: time) }
                if settings.connectionStorm && remote { storms.observe(source: source.address, port: destination.port, time: time) }
                if settings.synFlood { syns[destination.port, default: SynTally()].add(source.address) }
            } else if settings.portScan, remote, let kind = Self.stealthKind(flags) {
                scans.observe(source: source.address, port: destination.port, kind: kind, time: time)
            }
        case .udp(let source, let destination, _):
            guard settings.portScan else { return }
            if direction == .received && !outgoingUDP.contains(localPort: destination.port, remote: source.address, at: time) {
                if !destination.address.isMulticastOrBroadcast {
                    scans.observe(source: source.address, port: destination.port, kind: .udp, time: time)
                }
            }
            if direction == .sent { outgoingUDP.note(localPort: source.port, remote: destination.address, at: time) }
        case .portUnreachable(let proto, let original, _):
            guard settings.portScan, proto == .udp, direction == .sent else { return }
            scans.observe(source: original.source.address, port: original.destination.port, kind: .udp, time: time)
        }
    }

    /// The flag patterns of stealth scans (segments without SYN, ACK and RST).
    static func stealthKind(_ flags: TCPFlags) -> ScanKind? {
        let probe = flags.intersection([.fin, .psh, .urg])
        if flags.isEmpty { return .null }
        if probe == [.fin, .psh, .urg] { return .xmas }
        if probe == .fin { return .fin }
        return nil
    }

    /// What happened since the last drain, with detections that ended by `now`.
    public mutating func drain(now: Double) -> PacketFindings {
        var out = PacketFindings()
        out.events = (scans.evaluate(now: now) + storms.evaluate(now: now)).sorted { $0.time < $1.time }
        out.active = scans.active + storms.active
        out.syns = syns
        syns.removeAll(keepingCapacity: true)
        out.untracked = scans.untracked &+ storms.untracked
        outgoingUDP.prune(before: now - RecentFlows.memory)
        return out
    }
}

/// UDP flows this host sent on lately: (local port, remote address) → last time. A datagram that
/// comes back on such a flow is an answer, not a probe (one client, many of its own ports).
struct RecentFlows: Sendable {
    private struct Key: Hashable {
        var port: UInt16
        var remote: IPAddress
    }

    /// How long a flow is remembered (DNS and most request/response protocols answer well within).
    static let memory: Double = 120
    static let limit = 65_536
    private var flows: [Key: Double] = [:]

    mutating func note(localPort: UInt16, remote: IPAddress, at time: Double) {
        let key = Key(port: localPort, remote: remote)
        if flows.count >= Self.limit && flows[key] == nil {
            prune(before: time - Self.memory)
            if flows.count >= Self.limit { return }
        }
        flows[key] = time
    }

    func contains(localPort: UInt16, remote: IPAddress, at time: Double) -> Bool {
        guard let last = flows[Key(port: localPort, remote: remote)] else { return false }
        return time - last <= Self.memory
    }

    mutating func prune(before horizon: Double) {
        if flows.isEmpty { return }
        flows = flows.filter { $0.value >= horizon }
    }
}

extension IPAddress {
    /// 255.255.255.255, 224.0.0.0/4 and ff00::/8 (and any x.x.x.255 is not assumed: subnets vary).
    var isMulticastOrBroadcast: Bool {
        switch self {
        case .v4(let a): return a == 0xffff_ffff || a >> 28 == 0xe
        case .v6(let high, _): return high >> 56 == 0xff
        }
    }
}

// What the security detectors report: one value type for the three detections, so `top`, the
// daemon's event log, its alerts and `/metrics` all say the same thing.

/// How a port scan probes, from the packets that reach this host.
public enum ScanKind: String, Sendable, Hashable, CaseIterable, Comparable {
    /// SYN to closed or open ports: half-open (`nmap -sS`) and connect scans (`-sT`) look alike.
    case syn
    /// A bare FIN (`-sF`).
    case fin
    /// No flags at all (`-sN`).
    case null
    /// FIN, PSH and URG (`-sX`).
    case xmas
    /// UDP datagrams to many ports (`-sU`), answered with ICMP port unreachable where closed.
    case udp

    public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }
}

/// Which detector spoke.
public enum SecurityEventKind: String, Sendable, Hashable, CaseIterable {
    case scanDetected = "scan_detected"
    case floodDetected = "flood_detected"
    case connectionStorm = "connection_storm"
}

/// A detection is reported once when it starts and once more when it ends.
public enum DetectionPhase: String, Sendable, Hashable {
    case started
    case ended
}

/// A source address and how many packets (or connection attempts) it sent.
public struct SourceCount: Sendable, Hashable {
    public var address: IPAddress
    public var count: UInt64

    public init(address: IPAddress, count: UInt64) {
        self.address = address
        self.count = count
    }
}

/// One detection, as it started or as it ended.
public struct SecurityEvent: Sendable, Hashable {
    public var kind: SecurityEventKind
    public var phase: DetectionPhase
    /// When this report was made (seconds since the epoch): the packet that crossed the threshold
    /// for a start, the sample that saw it quiet for an end.
    public var time: Double
    /// When the activity began (its first packet in the window that triggered it).
    public var since: Double
    /// The scanning or storming address (nil for a flood, which names `sources`).
    public var source: IPAddress?
    /// Scans only.
    public var scanKind: ScanKind?
    /// Floods and storms: the local port; scans: nil (see first/last port).
    public var proto: TransportProtocol?
    public var port: UInt16?
    /// Scans: distinct local ports touched so far.
    public var portsTouched: Int?
    /// Scans: the first and the latest port touched, in the order they were probed.
    public var firstPort: UInt16?
    public var lastPort: UInt16?
    /// Floods: SYNs per second (with capture), else listen drops and SYN cookies per second.
    /// Storms: connection attempts per second over the window.
    public var rate: Double?
    /// Storms: attempts counted in the window; scans: probe packets; floods: SYNs (with capture).
    public var count: UInt64?
    /// Floods: the busiest sources (with capture), most first.
    public var sources: [SourceCount]
    /// Floods: what showed it (`syn_recv 120`, `listen drops 30`, `syncookies sent 500`, ...).
    public var reasons: [String]

    public init(kind: SecurityEventKind, phase: DetectionPhase, time: Double, since: Double,
                source: IPAddress? = nil, scanKind: ScanKind? = nil, proto: TransportProtocol? = nil,
                port: UInt16? = nil, portsTouched: Int? = nil, firstPort: UInt16? = nil, lastPort: UInt16? = nil,
                rate: Double? = nil, count: UInt64? = nil, sources: [SourceCount] = [], reasons: [String] = []) {
        self.kind = kind
        self.phase = phase
        self.time = time
        self.since = since
        self.source = source
        self.scanKind = scanKind
        self.proto = proto
        self.port = port
        self.portsTouched = portsTouched
        self.firstPort = firstPort
        self.lastPort = lastPort
        self.rate = rate
        self.count = count
        self.sources = sources
        self.reasons = reasons
    }

    /// One line for logs, `top` and event messages.
    public var message: String {
        let verb = phase == .started ? "" : " ended"
        switch kind {
        case .scanDetected:
            let ports = portsTouched.map { "\($0) port\($0 == 1 ? "" : "s")" } ?? "ports"
            let range = firstPort.map { f in lastPort.map { " (\(f)…\($0))" } ?? "" } ?? ""
            return "\(scanKind?.rawValue ?? "port") scan\(verb) from \(source.map(String.init(describing:)) ?? "?"): \(ports)\(range)"
        case .floodDetected:
            let who = sources.prefix(3).map { "\($0.address) ×\($0.count)" }.joined(separator: ", ")
            let why = reasons.isEmpty ? "" : " [\(reasons.joined(separator: ", "))]"
            return "SYN flood\(verb) on \(port.map(String.init) ?? "?")/tcp: \(formatPerSecond(rate))\(why)"
                + (who.isEmpty ? "" : " from \(who)")
        case .connectionStorm:
            return "connection storm\(verb) from \(source.map(String.init(describing:)) ?? "?") to \(port.map(String.init) ?? "?")/tcp: "
                + "\(count.map(String.init) ?? "?") attempts, \(formatPerSecond(rate))"
        }
    }
}

private func formatPerSecond(_ rate: Double?) -> String {
    guard let rate else { return "? /s" }
    let rounded = (rate * 10).rounded() / 10
    return rounded == rounded.rounded() ? "\(Int(rounded))/s" : "\(rounded)/s"
}

/// What the detectors found in one sample window.
public struct SecurityReport: Sendable {
    /// Detections that started or ended during the window, in time order.
    public var events: [SecurityEvent] = []
    /// Detections going on at the end of the window (their `started` form, brought up to date).
    public var active: [SecurityEvent] = []
    /// Scans, storms and floods that could not be tracked because the detectors' tables were full
    /// (a spoofed flood from very many addresses); the packets still counted elsewhere.
    public var untrackedSources: UInt64 = 0

    public init(events: [SecurityEvent] = [], active: [SecurityEvent] = [], untrackedSources: UInt64 = 0) {
        self.events = events
        self.active = active
        self.untrackedSources = untrackedSources
    }
}

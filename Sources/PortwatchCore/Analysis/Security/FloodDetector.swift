/// One TCP listener's load in a window: what the flood detector reads from a snapshot and its
/// window report.
public struct ListenerLoad: Sendable, Hashable {
    public var port: UInt16
    /// Half-open connections now (SYN_RECV).
    public var synRecv: Int
    /// Listen drops and overflows on the port's listeners during the window.
    public var listenDrops: UInt64
    /// Connections that appeared on the port during the window.
    public var opened: Int
    /// A listener's accept queue is over its limit now.
    public var acceptQueueFull: Bool

    public init(port: UInt16, synRecv: Int, listenDrops: UInt64, opened: Int, acceptQueueFull: Bool = false) {
        self.port = port
        self.synRecv = synRecv
        self.listenDrops = listenDrops
        self.opened = opened
        self.acceptQueueFull = acceptQueueFull
    }
}

/// SYN floods and accept overload, per listening TCP port, from counters alone (SYN_RECV, listen
/// drops, SYN cookies) and, with capture, the SYN rate and its sources. A port is flooded in a
/// window when any of these holds:
///  - its half-open connections reach `floodSynRecv`;
///  - its listeners drop `floodDropRate` or more segments per second (SYN or accept queue full;
///    a stray segment now and then, such as a FIN after close or a scan probe, is not enough), or
///    drop any while the accept queue is full;
///  - the system sent SYN cookies (its SYN queue overflowed somewhere) and this is the port with
///    the most SYN evidence (SYN_RECV, or captured SYNs);
///  - with capture: SYNs arrive at `floodSynRate` or more per second and mostly never become
///    connections.
/// A busy server that accepts what it is sent meets none of them. One event starts a flood; it
/// ends once none held for `floodQuiet` seconds.
public struct FloodDetector: Sendable {
    public var settings: DetectorSettings

    private struct Flood {
        var since: Double
        var started: Double
        var lastSeen: Double
        var peakRate: Double
        var syns: UInt64
        var sources: [IPAddress: UInt64]
        var reasons: [String]
    }

    private var floods: [UInt16: Flood] = [:]

    public init(settings: DetectorSettings) { self.settings = settings }

    /// One window of `seconds` ending at `now`: `listeners` (TCP, listening), the system's SYN
    /// cookies sent in the window, and the captured SYNs per port (nil without capture).
    public mutating func evaluate(now: Double, seconds: Double, listeners: [ListenerLoad],
                                  syncookiesSent: Int64, syns: [UInt16: SynTally]?) -> [SecurityEvent] {
        let secs = seconds > 0 ? seconds : 1
        var out: [SecurityEvent] = []
        // The port SYN cookies are blamed on: the one with the most half-open connections, or SYNs.
        var cookiePort: UInt16? = nil
        if syncookiesSent > 0 {
            let weight: (ListenerLoad) -> UInt64 = { UInt64($0.synRecv) &+ (syns?[$0.port]?.total ?? 0) }
            cookiePort = listeners.filter { weight($0) > 0 }.max { weight($0) < weight($1) }?.port
        }
        for load in listeners {
            var reasons: [String] = []
            if load.synRecv >= settings.floodSynRecv { reasons.append("syn_recv \(load.synRecv)") }
            if Double(load.listenDrops) / secs >= settings.floodDropRate || (load.acceptQueueFull && load.listenDrops > 0) {
                reasons.append("listen drops \(load.listenDrops)" + (load.acceptQueueFull ? ", accept queue full" : ""))
            }
            if cookiePort == load.port { reasons.append("syncookies sent \(syncookiesSent)") }
            let tally = syns?[load.port]
            let synRate = Double(tally?.total ?? 0) / secs
            if let tally, synRate >= settings.floodSynRate,
               Double(tally.total) - Double(load.opened) >= settings.floodSynRate * secs / 2 {
                reasons.append("half-open SYNs \(tally.total &- UInt64(clamping: max(0, load.opened)))")
            }
            guard !reasons.isEmpty else { continue }
            let rate = syns != nil ? synRate
                : (Double(load.listenDrops) + Double(cookiePort == load.port ? syncookiesSent : 0)) / secs
            if var flood = floods[load.port] {
                flood.lastSeen = now
                flood.peakRate = max(flood.peakRate, rate)
                flood.syns &+= tally?.total ?? 0
                for (a, n) in tally?.sources ?? [:] where flood.sources.count < SynTally.sourceLimit || flood.sources[a] != nil {
                    flood.sources[a, default: 0] &+= n
                }
                flood.reasons = reasons
                floods[load.port] = flood
            } else {
                let flood = Flood(since: now - secs, started: now, lastSeen: now, peakRate: rate, syns: tally?.total ?? 0,
                                  sources: tally?.sources ?? [:], reasons: reasons)
                floods[load.port] = flood
                out.append(event(load.port, flood, phase: .started, time: now, rate: rate))
            }
        }
        for (port, flood) in floods where now - flood.lastSeen >= settings.floodQuiet {
            out.append(event(port, flood, phase: .ended, time: now, rate: flood.peakRate))
            floods.removeValue(forKey: port)
        }
        return out
    }

    /// Floods going on (with their peak rate and sources so far).
    public var active: [SecurityEvent] {
        floods.map { event($0.key, $0.value, phase: .started, time: $0.value.started, rate: $0.value.peakRate) }
            .sorted { $0.since < $1.since }
    }

    private func event(_ port: UInt16, _ flood: Flood, phase: DetectionPhase, time: Double, rate: Double) -> SecurityEvent {
        var tally = SynTally()
        tally.sources = flood.sources
        return SecurityEvent(kind: .floodDetected, phase: phase, time: time, since: flood.since, proto: .tcp,
                             port: port, rate: rate, count: flood.syns > 0 ? flood.syns : nil,
                             sources: tally.top(5), reasons: flood.reasons)
    }
}

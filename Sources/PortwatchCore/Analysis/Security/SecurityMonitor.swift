/// The detectors as one stage of sampling: the packet findings of the window (scans, storms,
/// SYNs) and the snapshot's listeners (floods) in, a `SecurityReport` out. The `Sampler` runs it
/// after each window; `top --capture` and the daemon read the report.
public struct SecurityMonitor: Sendable {
    public var settings: DetectorSettings
    private var floods: FloodDetector

    public init(settings: DetectorSettings) {
        self.settings = settings
        floods = FloodDetector(settings: settings)
    }

    /// The report of one window. `packets` is nil without capture (floods are then judged from
    /// counters alone; scans and storms cannot be seen).
    public mutating func evaluate(now: Double, snapshot: PortSnapshot, window: WindowReport,
                                  packets: PacketFindings?) -> SecurityReport {
        var report = SecurityReport()
        if let packets {
            report.events = packets.events
            report.active = packets.active
            report.untrackedSources = packets.untracked
        }
        if settings.synFlood {
            var loads: [ListenerLoad] = []
            for summary in snapshot.ports where summary.proto == .tcp && summary.role == .local && !summary.listeners.isEmpty {
                let activity = window.activity(summary.key)
                loads.append(ListenerLoad(port: summary.port, synRecv: summary.connections.synRecv,
                                          listenDrops: activity.listenDrops, opened: activity.opened,
                                          acceptQueueFull: summary.listeners.contains { $0.acceptQueueFull }))
            }
            report.events += floods.evaluate(now: now, seconds: window.seconds, listeners: loads,
                                             syncookiesSent: window.syncookiesSent, syns: packets?.syns)
            report.active += floods.active
        }
        report.events.sort { $0.time < $1.time }
        return report
    }
}

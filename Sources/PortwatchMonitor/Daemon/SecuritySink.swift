import Logging
import PortwatchCore

/// Where the security detectors' findings go each sample: the live stream, history, the alert
/// channels and `/metrics`. Every closure only enqueues (see `RuleOutputs`).
public struct SecurityOutputs: Sendable {
    public var publish: @Sendable ([MonitorEvent]) async -> Void
    public var record: @Sendable ([MonitorEvent], [Alert]) async -> Void
    public var notify: @Sendable ([Alert]) async -> Void
    public var count: @Sendable ([SecurityEvent]) async -> Void

    public init(publish: @escaping @Sendable ([MonitorEvent]) async -> Void,
                record: @escaping @Sendable ([MonitorEvent], [Alert]) async -> Void,
                notify: @escaping @Sendable ([Alert]) async -> Void,
                count: @escaping @Sendable ([SecurityEvent]) async -> Void) {
        self.publish = publish
        self.record = record
        self.notify = notify
        self.count = count
    }
}

/// Turns each window's `SecurityReport` (made by the sampler's detectors) into events, alerts,
/// counters and log lines.
public actor SecuritySink: SampleSink {
    private var thresholds: DetectorSettings
    private let instance: String
    private let outputs: SecurityOutputs
    private let logger: Logger

    public init(thresholds: DetectorSettings, instance: String, outputs: SecurityOutputs, logger: Logger) {
        self.thresholds = thresholds
        self.instance = instance
        self.outputs = outputs
        self.logger = logger
    }

    /// Thresholds after a reload (they name the alerts' `threshold`).
    public func apply(_ config: MonitorConfig) { thresholds = config.detectors.thresholds }

    public func consume(_ latest: LatestSample) async {
        guard let found = latest.report?.security?.events, !found.isEmpty else { return }
        let events = found.map(MonitorEvent.init)
        let alerts = found.map { Alert($0, thresholds: thresholds, instance: instance) }
        for e in found { logger.warning("\(e.message)") }
        await outputs.publish(events)
        await outputs.record(events, alerts)
        await outputs.notify(alerts)
        await outputs.count(found.filter { $0.phase == .started })
    }
}

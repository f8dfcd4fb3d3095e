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
        // The daemon's own namespace, then each other one watched (`namespaces:`), whose
        // detectors saw its own capture.
        var tagged: [(event: SecurityEvent, namespace: NetworkNamespace?)] = (latest.report?.security?.events ?? []).map { ($0, nil) }
        for part in latest.namespaceParts {
            tagged += (part.report?.security?.events ?? []).map { ($0, part.namespace) }
        }
        guard !tagged.isEmpty else { return }
        let found = tagged.map(\.event)
        let events = tagged.map { MonitorEvent($0.event, namespace: $0.namespace) }
        let alerts = tagged.map { Alert($0.event, thresholds: thresholds, instance: instance, namespace: $0.namespace) }
        for e in events { logger.warning("\(e.message)") }
        await outputs.publish(events)
        await outputs.record(events, alerts)
        await outputs.notify(alerts)
        await outputs.count(found.filter { $0.phase == .started })
    }
}

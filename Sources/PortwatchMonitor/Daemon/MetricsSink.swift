import PortwatchCore

/// Feeds `/metrics` once per sample: the ports' series, the sample's duration, and the counters
/// the history writer and the alert dispatcher keep (write errors, dropped alerts), as growth
/// since the last sample.
public actor MetricsSink: SampleSink {
    private let metrics: PortMetrics
    private let writeErrors: @Sendable () -> Int
    private let dispatcher: AlertDispatcher
    private var configured: Set<MonitoredPort>
    private var errorsSeen = 0
    private var dropsSeen: [String: Int] = [:]

    /// `writeErrors` reads the history writer's failed-write count.
    public init(metrics: PortMetrics, configured: Set<MonitoredPort>, dispatcher: AlertDispatcher,
                writeErrors: @escaping @Sendable () -> Int) {
        self.metrics = metrics
        self.configured = configured
        self.dispatcher = dispatcher
        self.writeErrors = writeErrors
        // Every channel has its drop counter from the start, at 0.
        for channel in dispatcher.channelNames { metrics.recordAlertDropped(channel: channel, count: 0) }
    }

    /// Ports configured after a reload keep their series even when closed.
    public func setConfigured(_ ports: Set<MonitoredPort>) { configured = ports }

    public func consume(_ latest: LatestSample) async {
        metrics.update(latest, configuredPorts: configured)
        if let report = latest.report { metrics.recordSampleDuration(.nanoseconds(Int64(report.sampleSeconds * 1e9))) }
        let errors = writeErrors()
        if errors > errorsSeen {
            for _ in errorsSeen..<errors { metrics.recordHistoryWriteError() }
            errorsSeen = errors
        }
        for (channel, total) in await dispatcher.dropped() where total > dropsSeen[channel, default: 0] {
            metrics.recordAlertDropped(channel: channel, count: total - dropsSeen[channel, default: 0])
            dropsSeen[channel] = total
        }
    }
}

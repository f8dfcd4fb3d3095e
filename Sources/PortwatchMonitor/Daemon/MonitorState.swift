import PortwatchCore
import Synchronization

/// The daemon's live state, as the HTTP layer reads it (`MonitorDataSource`): the latest sample,
/// the alerts the rule side reports, the stream of samples and events, and history delegated to
/// the store.
///
/// It is a sink: give it to the sampler, and the rule side calls `publish(_:)` with its events
/// and `setAlerts(_:)` with the alerts pending or firing.
public actor MonitorState: MonitorDataSource, SampleSink {
    private let intervalNow: Mutex<Duration>
    private let store: any HistoryReading
    /// The subscribers of `/api/v1/stream`.
    public nonisolated let stream: StreamFanout
    private var current: LatestSample?
    private var active: [Alert] = []
    private var probeStatus: [ProbeStatus] = []

    public init(interval: Duration, history: any HistoryReading, streamBuffer: Int = 16) {
        self.intervalNow = Mutex(interval)
        self.store = history
        self.stream = StreamFanout(bufferSize: streamBuffer)
    }

    public nonisolated var interval: Duration { intervalNow.withLock { $0 } }

    /// After a reload with a new interval (`/healthz` measures staleness in intervals).
    public nonisolated func setInterval(_ interval: Duration) { intervalNow.withLock { $0 = interval } }

    public func consume(_ latest: LatestSample) {
        current = latest
        stream.send(.sample(latest))
    }

    /// Events the rules and detectors produced: streamed to subscribers now.
    public func publish(_ events: [MonitorEvent]) {
        for e in events { stream.send(.event(e)) }
    }

    /// Replaces the alerts pending or firing (resolved ones are left out).
    public func setAlerts(_ alerts: [Alert]) {
        active = alerts.filter { $0.state != .resolved }
    }

    public func latest() -> LatestSample? { current }

    public func alerts() -> [Alert] { active }

    public func history(_ port: MonitoredPort, since: Double, step: Double?) async throws -> HistorySeries {
        try await store.history(port, since: since, step: step)
    }

    public func events(since: Double, port: UInt16?, limit: Int) async throws -> [MonitorEvent] {
        try await store.events(since: since, port: port, limit: limit)
    }

    public func events(since: Double, port: UInt16?, netns: NamespaceFilter?, limit: Int) async throws -> [MonitorEvent] {
        try await store.events(since: since, port: port, netns: netns, limit: limit)
    }

    public nonisolated func subscribe() -> AsyncStream<StreamMessage> { stream.subscribe() }

    // MARK: Probes

    /// The configured probes (at start and after a reload): targets kept keep their latest result.
    public func setProbes(_ configs: [ProbeConfig]) {
        let old = Dictionary(probeStatus.map { ($0.config.target.text, $0) }, uniquingKeysWith: { a, _ in a })
        probeStatus = configs.map { config in
            var status = old[config.target.text] ?? ProbeStatus(config: config)
            status.config = config
            return status
        }
    }

    /// A probe's result (results of targets no longer configured are dropped).
    public func recordProbe(_ result: ProbeResult) {
        guard let index = probeStatus.firstIndex(where: { $0.config.target.text == result.target.text }) else { return }
        let t = result.time.timeIntervalSince1970
        if probeStatus[index].latest?.healthy != result.healthy || probeStatus[index].since == nil {
            probeStatus[index].since = t
        }
        probeStatus[index].latest = result
    }

    public func probes() -> [ProbeStatus] { probeStatus }

    public func probeHistory(_ target: String, since: Double) async throws -> ProbeHistory? {
        guard probeStatus.contains(where: { $0.config.target.text == target }) else { return nil }
        return try await store.probeHistory(target: target, since: since)
    }
}

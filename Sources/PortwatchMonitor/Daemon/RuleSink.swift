import PortwatchCore
#if canImport(Glibc)
import Glibc
#endif

/// Where the rule side's output goes besides the live state: queues, never slow work.
///
/// Every closure is called on the sampler's task, so each must only enqueue (the history
/// writer's backlog, the dispatcher's channel queues) and return.
public struct RuleOutputs: Sendable {
    /// One sample's rows with the events and alert changes the rules made of it (history).
    public var record: @Sendable (_ samples: [PortSample], _ events: [MonitorEvent], _ alerts: [Alert]) async -> Void
    /// Alerts that just fired or resolved (the dispatcher).
    public var notify: @Sendable ([Alert]) async -> Void
    /// Alerts pending or firing after each sample, and the rule names in force (metrics).
    public var active: @Sendable (_ alerts: [Alert], _ rules: [String]) async -> Void

    public init(record: @escaping @Sendable ([PortSample], [MonitorEvent], [Alert]) async -> Void,
                notify: @escaping @Sendable ([Alert]) async -> Void,
                active: @escaping @Sendable ([Alert], [String]) async -> Void = { _, _ in }) {
        self.record = record
        self.notify = notify
        self.active = active
    }
}

/// Runs the `RuleEngine` on every sample: its events go to the live state (stream) and to
/// history with the sample, its alert changes to the channels and history, and the alerts
/// pending or firing to the live state (`/api/v1/alerts`) and metrics.
public actor RuleSink: SampleSink {
    private var engine: RuleEngine
    private let state: MonitorState
    private let outputs: RuleOutputs

    public init(engine: RuleEngine, state: MonitorState, outputs: RuleOutputs) {
        self.engine = engine
        self.state = state
        self.outputs = outputs
    }

    /// Warms the anomaly models with stored samples (time order), before the first sample.
    public func learn(history samples: [PortSample]) {
        engine.learn(history: samples)
    }

    public func consume(_ latest: LatestSample) async {
        var outcome = engine.evaluate(latest.samples, at: latest.snapshot.takenAt, replacing: latest.replacedNamespaces)
        outcome.events = latest.namespaceEvents + outcome.events
        await handle(outcome, samples: latest.samples)
    }

    /// Judges one probe result (the probe service calls this as results come): probe events and
    /// the rules on probe metrics, with the same outputs as a sample's.
    public func consume(probe result: ProbeResult) async {
        let outcome = engine.evaluate(probe: result, at: result.time.timeIntervalSince1970)
        await handle(outcome, samples: [])
    }

    /// A new valid config (SIGHUP): rules and expectations follow it; alerts of removed rules resolve.
    public func apply(_ config: MonitorConfig) async {
        let outcome = engine.reload(config)
        await handle(outcome, samples: [])
    }

    /// Alerts pending or firing now.
    public var activeAlerts: [Alert] { engine.activeAlerts }

    private func handle(_ outcome: RuleOutcome, samples: [PortSample]) async {
        let active = engine.activeAlerts
        await state.publish(outcome.events)
        await state.setAlerts(active)
        await outputs.record(samples, outcome.events, outcome.notifications)
        if !outcome.notifications.isEmpty { await outputs.notify(outcome.notifications) }
        await outputs.active(active, engine.config.rules.map(\.name))
    }
}

extension MonitorConfig {
    /// The `instance` label of alerts: the configured one, else the host name.
    public var resolvedInstance: String {
        if let instance, !instance.isEmpty { return instance }
        return hostName()
    }
}

/// This host's name (`gethostname`), "localhost" when it has none.
func hostName() -> String {
    var buffer = [CChar](repeating: 0, count: 256)
    guard gethostname(&buffer, buffer.count - 1) == 0 else { return "localhost" }
    let name = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    return name.isEmpty ? "localhost" : name
}

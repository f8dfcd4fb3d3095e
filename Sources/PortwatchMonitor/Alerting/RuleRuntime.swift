import PortwatchCore

/// One configured rule while the daemon runs: its parsed port filter, its alerts per port and,
/// for anomaly rules, a learnt model per port.
struct RuleRuntime: Sendable {
    var config: RuleConfig
    /// nil with `ports` absent: every port row. A filter that does not parse matches nothing
    /// (config check reports it; the daemon never starts on it).
    private var filter: PortSpec?
    private var filterInvalid = false
    var tracks: [MonitoredPort: AlertTrack] = [:]
    /// Alerts of a probe rule, per target.
    var probeTracks: [String: AlertTrack] = [:]
    var models: [MonitoredPort: AnomalyModel] = [:]

    init(config: RuleConfig) {
        self.config = config
        if let text = config.ports {
            do { filter = try PortSpec(parsing: text) } catch { filterInvalid = true }
        }
    }

    func matches(_ port: MonitoredPort) -> Bool {
        if filterInvalid || config.metric.isProbeMetric { return false }
        if let namespaces = config.namespaces, !namespaces.contains(port.namespace) { return false }
        return filter?.contains(port: port.port, proto: port.proto) ?? true
    }

    /// Ports an anomaly rule models at most: each model holds a week's profile, and a rule
    /// without `ports:` must not grow without bound on a host with many ports.
    static let maxModels = 1000

    /// Whether this row is the rule's business this sample. An anomaly rule without `ports:`
    /// learns listening ports only (client ports come and go and have no baseline to learn).
    func judges(_ row: PortSample) -> Bool {
        guard config.anomaly != nil else { return true }
        if models[row.key] == nil && models.count >= Self.maxModels { return false }
        return config.ports != nil || row.listening || models[row.key] != nil
    }

    /// The rule's metric in a row; nil when it does not apply or, for a rate, when the row has no
    /// window yet (the first sample), so a baseline never trips a `below` rule.
    func value(in row: PortSample) -> Double? {
        if row.windowSeconds <= 0 && config.metric.isRate { return nil }
        return config.metric.value(in: row)
    }

    /// What a rule makes of one row.
    struct Judged {
        /// nil: no data this sample (state unchanged).
        var condition: Bool?
        var value: Double?
        var threshold: Double?
        var expected: Double?

        func message(rule: RuleConfig, port: some CustomStringConvertible) -> String {
            let v = value.map(alertNumber) ?? "no value"
            if let expected {
                return "\(rule.metric) on \(port) is \(v), expected about \(alertNumber(expected))"
            }
            if let above = rule.above, let value, value > above {
                return "\(rule.metric) on \(port) is \(v), above \(alertNumber(above))"
            }
            if let below = rule.below, let value, value < below {
                return "\(rule.metric) on \(port) is \(v), below \(alertNumber(below))"
            }
            return "\(rule.metric) on \(port) is \(v)"
        }
    }

    /// Whether a probe rule applies to this target.
    func matches(probe target: String) -> Bool {
        config.metric.isProbeMetric && (config.probe == nil || config.probe == target)
    }

    /// Judges one probe result against the rule's threshold. No value (a latency rule on a probe
    /// that did not connect, days left without TLS) is no data: the alert state stays.
    func judge(probe result: ProbeResult) -> Judged {
        guard let value = config.metric.value(in: result) else { return Judged(condition: nil) }
        var breached = false
        if let above = config.above, value > above { breached = true }
        if let below = config.below, value < below { breached = true }
        return Judged(condition: breached, value: value, threshold: config.above ?? config.below)
    }

    /// Judges a row; anomaly rules also learn from it.
    mutating func judge(_ row: PortSample, at now: Double) -> Judged {
        guard let value = value(in: row) else {
            // No window yet: skip. A metric that stopped applying (no accept queue) is not a breach.
            return Judged(condition: row.windowSeconds <= 0 && config.metric.isRate ? nil : false)
        }
        if let anomaly = config.anomaly {
            var model = models[row.key] ?? Self.model(for: config.metric, anomaly)
            let judgement = model.observe(value, at: now)
            models[row.key] = model
            let boundary = judgement.expected
                + (value >= judgement.expected ? 1 : -1) * anomaly.sigma * judgement.deviation
            return Judged(condition: judgement.anomalous, value: value, threshold: boundary,
                          expected: judgement.expected)
        }
        var breached = false
        if let above = config.above, value > above { breached = true }
        if let below = config.below, value < below { breached = true }
        return Judged(condition: breached, value: value, threshold: config.above ?? config.below)
    }

    /// Learns a stored value without judging (history replay at start).
    mutating func learn(_ value: Double, port: MonitoredPort, at time: Double) {
        guard let anomaly = config.anomaly else { return }
        var model = models[port] ?? Self.model(for: config.metric, anomaly)
        model.learn(value, at: time)
        models[port] = model
    }

    /// A model with a deviation floor in the metric's own units: a ratio moves in hundredths,
    /// counts and rates in whole units.
    static func model(for metric: RuleMetric, _ config: AnomalyConfig) -> AnomalyModel {
        let floor: Double = metric == .acceptQueueRatio ? 0.01 : 1
        return AnomalyModel(sigma: config.sigma, warmup: config.warmup.alertingSeconds, minimumDeviation: floor)
    }
}

extension RuleMetric {
    /// Metrics measured over the sample's window (zero, meaningless, on the first sample).
    var isRate: Bool {
        switch self {
        case .connections, .connectionsInState, .acceptQueue, .acceptQueueRatio: false
        case .probeSuccess, .probeLatencyMs, .tlsDaysLeft: false
        default: true
        }
    }
}

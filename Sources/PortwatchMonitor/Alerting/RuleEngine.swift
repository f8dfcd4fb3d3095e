import PortwatchCore

/// What one evaluation produced: events for the log, and alerts that changed state (just firing
/// or just resolved) for the channels.
public struct RuleOutcome: Sendable, Hashable {
    /// Events to store and stream, in the order they happened.
    public var events: [MonitorEvent]
    /// Alerts that just became firing or resolved: what the dispatcher sends.
    public var notifications: [Alert]

    /// Makes an outcome (empty by default).
    public init(events: [MonitorEvent] = [], notifications: [Alert] = []) {
        self.events = events
        self.notifications = notifications
    }
}

/// The daemon's judgement of each sample: listener and owner events, the `new_listener` detector,
/// port expectations, threshold and anomaly rules with their alert states.
///
/// Pure logic: the daemon calls `evaluate` once per sample with the sample's rows and time, and
/// stores or dispatches what comes out. Nothing here reads a clock or does I/O, so every branch
/// is testable with synthetic samples.
public struct RuleEngine: Sendable {
    /// The configuration in force.
    public private(set) var config: MonitorConfig
    /// The `instance` label of alerts.
    public let instance: String

    private var listeners = ListenerWatch()
    private var expectations: [ExpectationKey: ExpectationRuntime] = [:]
    private var rules: [RuleRuntime] = []
    private var probeWatch = ProbeWatch()
    /// Time of the last evaluated sample (a reload resolves removed rules' alerts at this time).
    private var lastTime: Double?

    /// `everListened`: ports the history has seen listening (for `new_listener`); `firstStart`:
    /// no history at all, so what listens at the first sample is the baseline, not news.
    public init(config: MonitorConfig, instance: String, everListened: Set<MonitoredPort>, firstStart: Bool) {
        self.config = config
        self.instance = instance
        listeners.everListened = everListened
        listeners.firstStart = firstStart
        configure(config)
    }

    /// Alerts pending or firing now, by rule then port.
    public var activeAlerts: [Alert] {
        var out: [Alert] = []
        for key in expectations.keys.sorted() {
            if let track = expectations[key]?.track { out.append(track.alert) }
        }
        for rule in rules {
            for port in rule.tracks.keys.sorted() {
                if let track = rule.tracks[port] { out.append(track.alert) }
            }
            for target in rule.probeTracks.keys.sorted() {
                if let track = rule.probeTracks[target] { out.append(track.alert) }
            }
        }
        return out
    }

    /// Judges one sample: `samples` are the rows of the sample taken at `now` (epoch seconds);
    /// `replacing`: labels of namespaces deleted and made again since the previous sample.
    public mutating func evaluate(_ samples: [PortSample], at now: Double,
                                  replacing replaced: Set<String> = []) -> RuleOutcome {
        var rows: [MonitoredPort: PortSample] = [:]
        for s in samples { rows[s.key] = s }
        lastTime = now
        var outcome = RuleOutcome()
        outcome.events += listeners.update(rows, at: now, detectors: config.detectors, replaced: replaced)
        closeAlerts(of: replaced, at: now, into: &outcome)
        evaluateExpectations(rows, at: now, into: &outcome)
        evaluateRules(rows, at: now, into: &outcome)
        return outcome
    }

    /// Judges one probe result (the probe service calls it as results come, apart from samples):
    /// `probe_failed` / `probe_recovered` when the target's health changed, and the rules on
    /// probe metrics that apply to the target.
    public mutating func evaluate(probe result: ProbeResult, at now: Double) -> RuleOutcome {
        let target = result.target.text
        let probe = config.probes.first { $0.target.text == target }
        var outcome = RuleOutcome()
        if let event = probeWatch.update(result, name: probe?.name, at: now) { outcome.events.append(event) }
        // Hysteresis in the probe's own rhythm: three of its intervals, as samples have three of theirs.
        let defaultKeep = (probe?.interval ?? config.interval).alertingSeconds * 3
        for index in rules.indices where rules[index].matches(probe: target) {
            let rule = rules[index].config
            let timing = AlertTrack.Timing(forSeconds: rule.forDuration.alertingSeconds,
                                           keepFiringForSeconds: rule.keepFiringFor.map(\.alertingSeconds) ?? defaultKeep)
            let judged = rules[index].judge(probe: result)
            let label = probe?.label ?? target
            let alert = {
                Alert(rule: rule.name, state: .firing, severity: rule.severity, proto: nil, port: nil,
                      metric: rule.metric.description, value: judged.value ?? 0, threshold: judged.threshold,
                      since: now, message: judged.message(rule: rule, port: label), instance: self.instance,
                      target: target)
            }
            var track = rules[index].probeTracks[target]
            let transition = AlertTrack.step(&track, condition: judged.condition, now: now, timing: timing, alert: alert)
            rules[index].probeTracks[target] = track
            apply(transition, into: &outcome, at: now)
        }
        lastTime = max(lastTime ?? now, now)
        return outcome
    }

    /// Takes a new configuration (SIGHUP). Rules that still exist by name, with the same metric
    /// and kind, keep their alerts and learnt models; firing alerts of rules that are gone resolve
    /// (returned, to dispatch), dated at the last sample.
    @discardableResult
    public mutating func reload(_ newConfig: MonitorConfig) -> RuleOutcome {
        let now = lastTime ?? 0
        var outcome = RuleOutcome()
        let oldRules = Dictionary(rules.map { ($0.config.name, $0) }, uniquingKeysWith: { a, _ in a })
        let oldExpectations = expectations
        config = newConfig
        configure(newConfig)
        var carried: Set<String> = []
        for index in rules.indices {
            guard let old = oldRules[rules[index].config.name], old.config.metric == rules[index].config.metric,
                  (old.config.anomaly == nil) == (rules[index].config.anomaly == nil) else { continue }
            // A namespace the rule no longer names is not a row gone quiet: its alert resolves now.
            for port in old.tracks.keys.sorted() {
                guard let track = old.tracks[port] else { continue }
                if rules[index].config.namespaces?.contains(port.namespace) ?? true {
                    rules[index].tracks[port] = track
                } else if let resolved = AlertTrack.close(track, now: now) {
                    record(resolved, into: &outcome, at: now)
                }
            }
            let targets = Set(newConfig.probes.map(\.target.text))
            for (target, track) in old.probeTracks {
                if targets.contains(target) && rules[index].matches(probe: target) {
                    rules[index].probeTracks[target] = track
                } else if let resolved = AlertTrack.close(track, now: now) {
                    record(resolved, into: &outcome, at: now)
                }
            }
            carried.insert(old.config.name)
            if old.config.anomaly == rules[index].config.anomaly { rules[index].models = old.models }
        }
        for (name, old) in oldRules.sorted(by: { $0.key < $1.key }) where !carried.contains(name) {
            for port in old.tracks.keys.sorted() {
                if let track = old.tracks[port], let resolved = AlertTrack.close(track, now: now) {
                    record(resolved, into: &outcome, at: now)
                }
            }
            for target in old.probeTracks.keys.sorted() {
                if let track = old.probeTracks[target], let resolved = AlertTrack.close(track, now: now) {
                    record(resolved, into: &outcome, at: now)
                }
            }
        }
        probeWatch.keep(only: Set(newConfig.probes.map(\.target.text)))
        for (key, old) in oldExpectations.sorted(by: { $0.key < $1.key }) {
            if let new = expectations[key], new.expectation == old.expectation {
                expectations[key] = old
            } else if let track = old.track, let resolved = AlertTrack.close(track, now: now) {
                record(resolved, into: &outcome, at: now)
            }
        }
        return outcome
    }

    /// Feeds stored history to the anomaly models (no events, no alerts), so a restarted daemon
    /// keeps its baselines and hour-of-week profiles. Samples must be in time order.
    public mutating func learn(history samples: [PortSample]) {
        for index in rules.indices where rules[index].config.anomaly != nil {
            for s in samples where rules[index].matches(s.key) && rules[index].judges(s) {
                guard let value = rules[index].value(in: s) else { continue }
                rules[index].learn(value, port: s.key, at: s.time)
            }
        }
    }

    // MARK: - Configuration

    private var keepFiringFor: Double { config.interval.alertingSeconds * 3 }

    private mutating func configure(_ config: MonitorConfig) {
        rules = config.rules.map { RuleRuntime(config: $0) }
        var fresh: [ExpectationKey: ExpectationRuntime] = [:]
        for p in config.ports {
            let port = p.key
            if let expect = p.expect {
                let key = ExpectationKey(port: port, check: .state)
                fresh[key] = ExpectationRuntime(expectation: .state(expect), name: p.name)
            }
            if let max = p.maxConnections {
                let key = ExpectationKey(port: port, check: .maxConnections)
                fresh[key] = ExpectationRuntime(expectation: .maxConnections(max), name: p.name)
            }
        }
        expectations = fresh
    }

    // MARK: - Expectations

    private mutating func evaluateExpectations(_ rows: [MonitoredPort: PortSample], at now: Double,
                                               into outcome: inout RuleOutcome) {
        for key in expectations.keys.sorted() {
            guard var runtime = expectations[key] else { continue }
            let row = rows[key.port]
            let verdict = runtime.expectation.judge(row)
            let label = runtime.name.map { "\(key.port) (\($0))" } ?? key.port.description
            var details = ["expect": runtime.expectation.description]
            if let name = runtime.name { details["name"] = name }
            if let namespace = key.port.namespace { details["netns"] = namespace }
            if verdict.met != runtime.met {
                if !verdict.met {
                    outcome.events.append(MonitorEvent(time: now, kind: .expectationFailed, proto: key.port.proto,
                                                       port: key.port.port, message: "\(label) \(verdict.failure)",
                                                       details: details))
                } else if runtime.met != nil {
                    outcome.events.append(MonitorEvent(time: now, kind: .expectationMet, proto: key.port.proto,
                                                       port: key.port.port,
                                                       message: "\(label) meets its expectation again (\(runtime.expectation.description))",
                                                       details: details))
                }
                runtime.met = verdict.met
            }
            let expectation = runtime.expectation
            let alert = {
                Alert(rule: expectation.ruleName, state: .firing, severity: expectation.severity,
                      proto: key.port.proto, port: key.port.port, metric: expectation.metric, value: verdict.value,
                      threshold: expectation.threshold, since: now, message: "\(label) \(verdict.failure)",
                      instance: self.instance, namespace: key.port.namespace)
            }
            // An expectation is a fact of each sample: it alerts at once and resolves as soon as it is met.
            let transition = AlertTrack.step(&runtime.track, condition: !verdict.met, now: now,
                                             timing: .init(forSeconds: 0, keepFiringForSeconds: 0), alert: alert)
            expectations[key] = runtime
            apply(transition, into: &outcome, at: now)
        }
    }

    // MARK: - Rules

    private mutating func evaluateRules(_ rows: [MonitoredPort: PortSample], at now: Double,
                                        into outcome: inout RuleOutcome) {
        let defaultKeep = keepFiringFor
        for index in rules.indices {
            let timing = AlertTrack.Timing(
                forSeconds: rules[index].config.forDuration.alertingSeconds,
                keepFiringForSeconds: rules[index].config.keepFiringFor.map(\.alertingSeconds) ?? defaultKeep)
            var seen: Set<MonitoredPort> = []
            for key in rows.keys.sorted() where rules[index].matches(key) {
                guard let row = rows[key], rules[index].judges(row) else { continue }
                seen.insert(key)
                let judged = rules[index].judge(row, at: now)
                let rule = rules[index].config
                let alert = {
                    Alert(rule: rule.name, state: .firing, severity: rule.severity, proto: key.proto, port: key.port,
                          metric: rule.metric.description, value: judged.value ?? 0, threshold: judged.threshold,
                          since: now, message: judged.message(rule: rule, port: key), instance: self.instance,
                          namespace: key.namespace)
                }
                var track = rules[index].tracks[key]
                let transition = AlertTrack.step(&track, condition: judged.condition, now: now, timing: timing,
                                                 alert: alert)
                rules[index].tracks[key] = track
                apply(transition, into: &outcome, at: now)
            }
            // A row that vanished counts as a false condition: its alert resolves after keep_firing_for.
            for key in rules[index].tracks.keys.sorted() where !seen.contains(key) {
                var track = rules[index].tracks[key]
                guard let last = track?.alert else { continue }
                let transition = AlertTrack.step(&track, condition: false, now: now, timing: timing) {
                    var alert = last
                    alert.message = "\(key) has no row any more (\(last.message))"
                    return alert
                }
                rules[index].tracks[key] = track
                apply(transition, into: &outcome, at: now)
            }
        }
    }

    /// A namespace made again under an old name is a new namespace: the old one's alerts resolve
    /// now (as when a rule stops naming a namespace), and the new one's rows start from pending.
    private mutating func closeAlerts(of replaced: Set<String>, at now: Double, into outcome: inout RuleOutcome) {
        guard !replaced.isEmpty else { return }
        for index in rules.indices {
            for key in rules[index].tracks.keys.sorted() where key.namespace.map(replaced.contains) == true {
                if let track = rules[index].tracks.removeValue(forKey: key), let resolved = AlertTrack.close(track, now: now) {
                    record(resolved, into: &outcome, at: now)
                }
            }
        }
    }

    private func apply(_ transition: AlertTrack.Transition, into outcome: inout RuleOutcome, at now: Double) {
        switch transition {
        case .none: break
        case .fired(let alert), .resolved(let alert): record(alert, into: &outcome, at: now)
        }
    }

    private func record(_ alert: Alert, into outcome: inout RuleOutcome, at now: Double) {
        outcome.notifications.append(alert)
        var details = ["rule": alert.rule, "severity": alert.severity, "metric": alert.metric,
                       "value": alertNumber(alert.value)]
        if let target = alert.target { details["target"] = target }
        if let namespace = alert.namespace { details["netns"] = namespace }
        if let t = alert.threshold { details["threshold"] = alertNumber(t) }
        let firing = alert.state == .firing
        let message = firing ? "alert \(alert.rule) firing: \(alert.message)" : "alert \(alert.rule) resolved"
        outcome.events.append(MonitorEvent(time: now, kind: firing ? .alertFiring : .alertResolved,
                                           proto: alert.proto, port: alert.port, message: message, details: details))
    }
}

/// Numbers in messages: integers without a fraction, others with up to three decimals.
func alertNumber(_ v: Double) -> String {
    guard v.isFinite else { return String(v) }
    if v == v.rounded(), abs(v) < 1e15 { return String(Int64(v)) }
    let scaled = (v * 1000).rounded() / 1000
    return String(scaled)
}

extension Duration {
    /// Seconds as a Double (attoseconds included), for the rules' arithmetic on epoch seconds.
    var alertingSeconds: Double {
        let (s, atto) = components
        return Double(s) + Double(atto) / 1e18
    }
}

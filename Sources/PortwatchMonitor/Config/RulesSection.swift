import PortwatchCore
import Yams

// `rules:` — thresholds and anomaly models on the rule metrics.

extension ConfigReader {
    static let ruleKeys = ["name", "ports", "probe", "metric", "above", "below", "anomaly", "for", "keep_firing_for", "severity", "netns"]
    static let anomalyKeys = ["sigma", "warmup"]
    /// The longest `for:` or `keep_firing_for:`: beyond a day an alert says nothing timely.
    static let longestHold: Duration = .seconds(86_400)

    mutating func readRules(_ node: Node, probes: [ProbeConfig] = []) -> [RuleConfig] {
        guard let items = list(node, "rules") else { return [] }
        var rules: [RuleConfig] = []
        var nameLines: [String: Int] = [:]
        for (index, item) in items.enumerated() {
            let path = "rules[\(index)]"
            guard let entry = settings(item, path: path, keys: Self.ruleKeys) else { continue }

            var name: String?
            if let node = entry["name"] {
                name = string(node, entry.path("name"))
                if let n = name {
                    if let line = nameLines[n] {
                        report(at: node.mark, entry.path("name"), "duplicate rule name '\(n)' (first at line \(line))")
                    } else {
                        nameLines[n] = node.mark?.line ?? 1
                    }
                }
            } else {
                report(at: entry.mark, path, "missing key 'name'")
            }

            var metric: RuleMetric?
            if let node = entry["metric"] {
                metric = ruleMetric(node, entry.path("metric"))
            } else {
                report(at: entry.mark, path, "missing key 'metric' (one of: \(RuleMetric.names.joined(separator: ", ")))")
            }

            // Every value is read (and so checked) even when the rule is already known to be bad.
            let ports = entry["ports"].flatMap { rulePorts($0, entry.path("ports")) }
            let above = entry["above"].flatMap { number($0, entry.path("above")) }
            let below = entry["below"].flatMap { number($0, entry.path("below")) }
            let anomaly = entry["anomaly"].flatMap { anomalyModel($0, entry.path("anomaly")) }
            let hold = entry["for"].flatMap { duration($0, entry.path("for"), maximum: Self.longestHold) }
            let keep = entry["keep_firing_for"].flatMap {
                duration($0, entry.path("keep_firing_for"), maximum: Self.longestHold)
            }
            let severity = entry["severity"].flatMap { string($0, entry.path("severity")) }
            let namespaces = entry["netns"].flatMap { ruleNamespaces($0, entry.path("netns")) }

            let probe = entry["probe"].flatMap { ruleProbe($0, entry.path("probe"), probes: probes) }
            var kindRight = true
            if let metric {
                kindRight = probeRuleFits(metric, entry, probes: probes)
            }

            let conditions = entry.entries.filter { ["above", "below", "anomaly"].contains($0.key) }
            if conditions.isEmpty {
                report(at: entry.mark, path, "needs one of above, below or anomaly")
            } else if conditions.count > 1 {
                let first = conditions[0].key
                for extra in conditions.dropFirst() {
                    report(at: extra.keyMark, path, "'\(extra.key)' cannot be combined with '\(first)' "
                           + "(a rule has one of above, below or anomaly; write two rules)")
                }
            }

            let conditionRead = conditions.count == 1 && (above != nil || below != nil || anomaly != nil)
            let everyValueRead = (entry["ports"] == nil || ports != nil) && (entry["for"] == nil || hold != nil)
                && (entry["keep_firing_for"] == nil || keep != nil) && (entry["severity"] == nil || severity != nil)
                && (entry["netns"] == nil || namespaces != nil)
            guard let name, let metric, conditionRead, everyValueRead, kindRight,
                  entry["probe"] == nil || probe != nil else { continue }
            rules.append(RuleConfig(name: name, ports: ports, metric: metric, above: above, below: below,
                                    anomaly: anomaly, forDuration: hold ?? .zero, keepFiringFor: keep,
                                    severity: severity ?? "warning", probe: probe, namespaces: namespaces))
        }
        return rules
    }

    /// A rule's `probe:`: a configured target or a probe's name, kept as the target text.
    private mutating func ruleProbe(_ node: Node, _ path: String, probes: [ProbeConfig]) -> String? {
        guard let text = string(node, path) else { return nil }
        if let match = probes.first(where: { $0.target.text == text || $0.name == text }) { return match.target.text }
        let known = probes.map(\.target.text) + probes.compactMap(\.name)
        if known.isEmpty {
            report(at: node.mark, path, "no probes are configured (add the target under probes:)")
        } else {
            let hint = closestMatch(to: text, among: known).map { " (did you mean '\($0)'?)" } ?? ""
            report(at: node.mark, path, "'\(text)' is not a configured probe\(hint); probes: \(known.joined(separator: ", "))")
        }
        return nil
    }

    /// Probe metrics are judged on probe results, port metrics on port rows: a rule keeps to one.
    private mutating func probeRuleFits(_ metric: RuleMetric, _ entry: Settings, probes: [ProbeConfig]) -> Bool {
        var fits = true
        if metric.isProbeMetric {
            if let mark = entry.keyMark("ports") {
                report(at: mark, entry.path, "'ports' does not apply to \(metric) (a probe metric): name a target with probe:")
                fits = false
            }
            if let mark = entry.keyMark("netns") {
                report(at: mark, entry.path, "'netns' does not apply to \(metric) (a probe metric): probes run in the daemon's own namespace")
                fits = false
            }
            if let mark = entry.keyMark("anomaly") {
                report(at: mark, entry.path, "anomaly models are for port metrics; use above or below with \(metric)")
                fits = false
            }
            if probes.isEmpty, entry["probe"] == nil, let mark = entry["metric"]?.mark {
                report(at: mark, entry.path("metric"), "\(metric) needs probes: configured")
                fits = false
            }
        } else if let mark = entry.keyMark("probe") {
            report(at: mark, entry.path, "'probe' needs a probe metric (\(RuleMetric.probeMetricNames.joined(separator: ", "))), not \(metric)")
            fits = false
        }
        return fits
    }

    private mutating func ruleMetric(_ node: Node, _ path: String) -> RuleMetric? {
        guard let text = text(node, path, expected: "a metric name") else { return nil }
        if let metric = RuleMetric(name: text) { return metric }
        let hint = closestMatch(to: text, among: RuleMetric.names).map { " (did you mean '\($0)'?)" } ?? ""
        report(at: node.mark, path, "unknown metric '\(text)'\(hint); valid metrics: "
               + RuleMetric.names.joined(separator: ", "))
        return nil
    }

    /// A rule's `netns:`: one namespace or a list, each as a port's `netns:` takes it (`host`, a
    /// name from /run/netns, `net:[INODE]`); nil when any is invalid.
    private mutating func ruleNamespaces(_ node: Node, _ path: String) -> [String?]? {
        let items: [Node]
        if case .sequence(let sequence) = node {
            guard !sequence.isEmpty else {
                report(at: node.mark, path, "empty list; leave netns out to judge every namespace")
                return nil
            }
            items = Array(sequence)
        } else {
            items = [node]
        }
        var labels: [String?] = []
        var valid = true
        for item in items {
            guard let label = namespace(item, path) else {
                valid = false
                continue
            }
            if labels.contains(label) {
                report(at: item.mark, path, "'\(label ?? "host")' is listed twice")
                valid = false
            } else {
                labels.append(label)
            }
        }
        return valid ? labels : nil
    }

    /// A rule's `netns:` must name namespaces the daemon watches (`namespaces:`), or the rule
    /// could never judge a row there: checked once `namespaces:` is read.
    mutating func checkRuleNamespaces(_ node: Node, watched: NamespaceSelection?) {
        guard case .sequence(let rules) = node else { return }
        for (index, rule) in rules.enumerated() {
            guard case .mapping(let mapping) = rule,
                  let value = mapping.first(where: { $0.key.string == "netns" })?.value else { continue }
            let items: [Node]
            if case .sequence(let sequence) = value { items = Array(sequence) } else { items = [value] }
            for item in items {
                guard let text = item.string, !text.hasPrefix("pid:"),
                      let label = (try? HistoryNamespace.parse(text, option: "netns")) ?? nil else { continue }
                checkWatched(label, at: item.mark, "rules[\(index)].netns", watched: watched)
            }
        }
    }

    /// A port list as `config` and the CLI take it (`"443"`, `"8000-8100"`, `"53/udp"`), an unquoted
    /// number, or a YAML list of those; kept as text, checked here.
    private mutating func rulePorts(_ node: Node, _ path: String) -> String? {
        let text: String
        if case .sequence(let sequence) = node {
            var parts: [String] = []
            for item in sequence {
                guard let part = self.text(item, path, expected: "a port, range or service name") else { return nil }
                parts.append(part)
            }
            guard !parts.isEmpty else {
                report(at: node.mark, path, "empty list; leave ports out to watch every port")
                return nil
            }
            text = parts.joined(separator: ",")
        } else {
            guard let single = self.text(node, path, expected: "ports (e.g. \"443\", \"8000-8100\", \"53/udp\")") else {
                return nil
            }
            text = single
        }
        do {
            _ = try PortSpec(parsing: text)
        } catch {
            report(at: node.mark, path, error.message)
            return nil
        }
        return text
    }

    private mutating func anomalyModel(_ node: Node, _ path: String) -> AnomalyConfig? {
        guard let section = settings(node, path: path, keys: Self.anomalyKeys) else { return nil }
        var model = AnomalyConfig()
        var ok = true
        if let node = section["sigma"] {
            if let sigma = number(node, section.path("sigma")) {
                if sigma > 0 && sigma <= 100 {
                    model.sigma = sigma
                } else {
                    report(at: node.mark, section.path("sigma"), "must be above 0 and at most 100, found \(node.scalar?.string ?? "")")
                    ok = false
                }
            } else {
                ok = false
            }
        }
        if let node = section["warmup"] {
            if let warmup = duration(node, section.path("warmup")) { model.warmup = warmup } else { ok = false }
        }
        return ok ? model : nil
    }
}

import PortwatchCore
import Yams

// The top level of the config and its small sections (database, detectors, metrics). Ports, rules
// and channels have files of their own.

extension ConfigReader {
    static let topLevelKeys = ["interval", "listen", "token_file", "database", "ports", "rules", "detectors",
                               "channels", "capture", "metrics", "instance", "namespaces", "probes"]
    static let databaseKeys = ["path", "retention", "max_size"]
    static let retentionKeys = ["raw", "minute", "hour"]
    static let detectorKeys = ["new_listener", "owner_changed", "port_scan", "syn_flood", "connection_storm"]
    static let metricsKeys = ["max_ports"]
    static let portScanKeys = ["enabled", "ports", "window"]
    static let synFloodKeys = ["enabled", "syn_recv", "syn_rate", "drop_rate", "quiet"]
    static let connectionStormKeys = ["enabled", "connections", "window"]
    /// Detector windows: long enough to hold a probe or two, short enough to stay in memory.
    static let detectorWindowRange: (Duration, Duration) = (.seconds(1), .seconds(3600))

    /// Shortest and longest sampling interval: below 100 ms a sample costs more than it tells, above
    /// an hour rates are meaningless for alerting.
    static let intervalRange: (Duration, Duration) = (.milliseconds(100), .seconds(3600))

    /// The whole config from the document's root (nil for an empty file: every default).
    mutating func readConfig(_ root: Node?) -> MonitorConfig {
        var config = MonitorConfig()
        guard let root, let top = settings(root, path: "", keys: Self.topLevelKeys) else { return config }

        if let node = top["interval"],
           let value = duration(node, "interval", minimum: Self.intervalRange.0, maximum: Self.intervalRange.1) {
            config.interval = value
        }
        var listenMark: Mark?
        if let node = top["listen"], let value = listenAddress(node, "listen") {
            config.listen = value
            listenMark = node.mark
        }
        var tokenFileWritten = false
        if let node = top["token_file"] {
            tokenFileWritten = true
            if let path = string(node, "token_file") {
                let resolved = resolvePath(path)
                if let problem = tokenFileProblem(resolved) {
                    report(at: node.mark, "token_file", problem)
                } else {
                    config.tokenFile = resolved
                }
            }
        }
        if let node = top["database"] { config.database = readDatabase(node) }
        if let node = top["ports"] { config.ports = readPorts(node) }
        // Before the rules: a rule on a probe metric names one of them.
        if let node = top["probes"] { config.probes = readProbes(node) }
        if let node = top["rules"] { config.rules = readRules(node, probes: config.probes) }
        if let node = top["channels"] { config.channels = readChannels(node) }
        if let node = top["capture"], let value = bool(node, "capture") { config.capture = value }
        if let node = top["detectors"] { config.detectors = readDetectors(node, capture: config.capture) }
        if let node = top["metrics"], let metrics = settings(node, path: "metrics", keys: Self.metricsKeys),
           let value = metrics["max_ports"].flatMap({ integer($0, "metrics.max_ports", in: 1...100_000) }) {
            config.metrics.maxPorts = value
        }
        if let node = top["instance"], let value = string(node, "instance") { config.instance = value }
        if let node = top["namespaces"] { config.namespaces = readNamespaces(node) }
        if let node = top["ports"] { checkPortNamespaces(node, watched: config.namespaces) }
        if let node = top["rules"] { checkRuleNamespaces(node, watched: config.namespaces) }

        // Checked once `listen` is known; a token_file that was written but is bad has been reported.
        if !tokenFileWritten, let problem = config.missingTokenProblem {
            report(at: listenMark, "listen", problem)
        }
        return config
    }

    /// `host:port` or `[v6]:port`; the host a loopback or interface address, a wildcard or a name.
    mutating func listenAddress(_ node: Node, _ path: String) -> ListenAddress? {
        guard let text = text(node, path, expected: "ADDRESS:PORT (e.g. 127.0.0.1:9910)") else { return nil }
        do {
            return try ListenAddress(parsing: text)
        } catch {
            report(at: node.mark, path, error.message)
            return nil
        }
    }

    private mutating func readDatabase(_ node: Node) -> DatabaseConfig {
        var database = DatabaseConfig()
        guard let section = settings(node, path: "database", keys: Self.databaseKeys) else { return database }
        if let node = section["path"], let path = string(node, "database.path") {
            if path.hasPrefix("~") {
                report(at: node.mark, "database.path", "'~' is not expanded here; write the full path")
            } else if path.hasSuffix("/") {
                report(at: node.mark, "database.path", "names a directory; give the database file, e.g. \(path)history.sqlite")
            } else {
                database.path = resolvePath(path)
            }
        }
        if let node = section["max_size"], let value = size(node, "database.max_size", minimum: 1_000_000) {
            database.maxSize = value
        }
        if let node = section["retention"],
           let retention = settings(node, path: "database.retention", keys: Self.retentionKeys) {
            var marks: [String: Mark?] = [:]
            for key in Self.retentionKeys {
                guard let value = retention[key],
                      let d = duration(value, retention.path(key), minimum: .seconds(1)) else { continue }
                marks[key] = value.mark
                switch key {
                case "raw": database.retention.raw = d
                case "minute": database.retention.minute = d
                default: database.retention.hour = d
                }
            }
            // Roll-ups are made from the finer resolution; keeping them shorter would keep nothing.
            let r = database.retention
            if let mark = marks["minute"], r.minute < r.raw {
                report(at: mark, "database.retention.minute",
                       "\(formatDuration(r.minute)) is shorter than raw retention (\(formatDuration(r.raw)))")
            }
            if let mark = marks["hour"], r.hour < r.minute {
                report(at: mark, "database.retention.hour",
                       "\(formatDuration(r.hour)) is shorter than minute retention (\(formatDuration(r.minute)))")
            }
        }
        return database
    }

    /// `namespaces: all`, or a list of names under /run/netns (a name may appear later).
    private mutating func readNamespaces(_ node: Node) -> NamespaceSelection? {
        if case .scalar = node {
            guard let word = string(node, "namespaces") else { return nil }
            if word == "all" { return .all }
            report(at: node.mark, "namespaces", "expected all or a list of namespace names, not '\(word)'")
            return nil
        }
        guard let items = list(node, "namespaces") else { return nil }
        var names: [String] = []
        for (i, item) in items.enumerated() {
            guard let name = string(item, "namespaces[\(i)]") else { continue }
            if name.isEmpty || name.contains("/") || name == "." || name == ".." {
                report(at: item.mark, "namespaces[\(i)]", "'\(name)' is not a namespace name (a name under /run/netns)")
            } else {
                names.append(name)
            }
        }
        return .list(names)
    }

    private mutating func readDetectors(_ node: Node, capture: Bool) -> DetectorConfig {
        var detectors = DetectorConfig()
        guard let section = settings(node, path: "detectors", keys: Self.detectorKeys) else { return detectors }
        for entry in section.entries {
            let path = section.path(entry.key)
            // The security detectors take `true`/`false` or a mapping of thresholds (which turns them on).
            let on: Bool
            if case .mapping = entry.value, ["port_scan", "syn_flood", "connection_storm"].contains(entry.key) {
                guard let value = readDetectorThresholds(entry.key, entry.value, path: path, into: &detectors.thresholds) else { continue }
                on = value
            } else {
                guard let value = bool(entry.value, path) else { continue }
                on = value
            }
            switch entry.key {
            case "new_listener": detectors.newListener = on
            case "owner_changed": detectors.ownerChanged = on
            case "port_scan": detectors.portScan = on
            case "syn_flood": detectors.synFlood = on
            default: detectors.connectionStorm = on
            }
            // Scans and storms read packets: without capture they would be silently blind. SYN
            // floods are judged from counters too (SYN_RECV, listen drops, SYN cookies).
            if on, ["port_scan", "connection_storm"].contains(entry.key), !capture {
                report(at: entry.value.mark, path, "needs capture: true (it reads packets)")
            }
        }
        return detectors
    }

    /// Reads `port_scan: {...}`, `syn_flood: {...}` or `connection_storm: {...}` into `settings`;
    /// returns whether the detector is on (`enabled`, true unless said otherwise), nil when the
    /// section is not a valid mapping.
    private mutating func readDetectorThresholds(_ name: String, _ node: Node, path: String,
                                                 into thresholds: inout DetectorSettings) -> Bool? {
        let keys = name == "port_scan" ? Self.portScanKeys : name == "syn_flood" ? Self.synFloodKeys : Self.connectionStormKeys
        guard let section = settings(node, path: path, keys: keys) else { return nil }
        var on = true
        let (shortest, longest) = Self.detectorWindowRange
        func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18 }
        for entry in section.entries {
            let key = section.path(entry.key)
            switch (name, entry.key) {
            case (_, "enabled"):
                if let value = bool(entry.value, key) { on = value }
            case ("port_scan", "ports"):
                if let value = integer(entry.value, key, in: 2...65_535) { thresholds.scanPorts = value }
            case ("port_scan", "window"):
                if let value = duration(entry.value, key, minimum: shortest, maximum: longest) { thresholds.scanWindow = seconds(value) }
            case ("syn_flood", "syn_recv"):
                if let value = integer(entry.value, key, in: 1...1_000_000) { thresholds.floodSynRecv = value }
            case ("syn_flood", "syn_rate"):
                if let value = number(entry.value, key) {
                    if value > 0 { thresholds.floodSynRate = value } else { report(at: entry.value.mark, key, "must be more than 0 (SYNs per second)") }
                }
            case ("syn_flood", "drop_rate"):
                if let value = number(entry.value, key) {
                    if value > 0 { thresholds.floodDropRate = value } else { report(at: entry.value.mark, key, "must be more than 0 (drops per second)") }
                }
            case ("syn_flood", "quiet"):
                if let value = duration(entry.value, key, minimum: shortest, maximum: longest) { thresholds.floodQuiet = seconds(value) }
            case ("connection_storm", "connections"):
                if let value = integer(entry.value, key, in: 2...10_000_000) { thresholds.stormConnections = value }
            default:  // connection_storm.window: the only key left
                if let value = duration(entry.value, key, minimum: shortest, maximum: longest) { thresholds.stormWindow = seconds(value) }
            }
        }
        return on
    }
}

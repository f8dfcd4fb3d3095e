import PortwatchCore

// The security detectors' findings in the daemon's words: each detection that starts or ends is
// an event (`scan_detected`, `flood_detected`, `connection_storm`) and an alert that fires when it
// starts and resolves when it ends, so webhooks, exec and Alertmanager hear of it like any rule.

extension EventKind {
    /// The event kind of a security detection.
    public init(_ kind: SecurityEventKind) {
        switch kind {
        case .scanDetected: self = .scanDetected
        case .floodDetected: self = .floodDetected
        case .connectionStorm: self = .connectionStorm
        }
    }

    /// Kinds whose details carry numbers and lists (rendered as such in JSON).
    public var isSecurityDetection: Bool { self == .scanDetected || self == .floodDetected || self == .connectionStorm }
}

extension MonitorEvent {
    /// A detection as an event: `phase`, `source`, `scan_kind`, `ports_touched`, `first_port`,
    /// `last_port`, `rate`, `count`, `sources` (`address=count,...`), `reasons` (`; `-separated)
    /// and `since` in the details, as the history stores them (JSON renders them typed). A
    /// detection in another network namespace adds `netns` and `netns_inode`, and its message
    /// starts with the namespace's label.
    public init(_ e: SecurityEvent, namespace: NetworkNamespace? = nil) {
        var details: [String: String] = ["phase": e.phase.rawValue, "since_timestamp": String(e.since)]
        if let v = e.source { details["source"] = v.description }
        if let v = e.scanKind { details["scan_kind"] = v.rawValue }
        if let v = e.portsTouched { details["ports_touched"] = String(v) }
        if let v = e.firstPort { details["first_port"] = String(v) }
        if let v = e.lastPort { details["last_port"] = String(v) }
        if let v = e.rate { details["rate"] = String((v * 10).rounded() / 10) }
        if let v = e.count { details["count"] = String(v) }
        if !e.sources.isEmpty { details["sources"] = e.sources.map { "\($0.address)=\($0.count)" }.joined(separator: ",") }
        if !e.reasons.isEmpty { details["reasons"] = e.reasons.joined(separator: "; ") }
        if let namespace {
            details["netns"] = namespace.daemonLabel
            details["netns_inode"] = String(namespace.inode)
        }
        self.init(time: e.time, kind: EventKind(e.kind), proto: e.proto, port: e.port,
                  message: namespace.map { "\($0.daemonLabel): \(e.message)" } ?? e.message, details: details)
    }
}

extension Alert {
    /// A detection as an alert of the rule named like its event kind: firing when it starts,
    /// resolved when it ends. `metric`/`value`: ports touched (scans), SYNs or drops per second
    /// (floods), attempts per second (storms). In another namespace the alert carries its label
    /// (`namespace`, the `netns` label) and the message names it.
    public init(_ e: SecurityEvent, thresholds: DetectorSettings, instance: String, namespace: NetworkNamespace? = nil) {
        let (metric, value, threshold): (String, Double, Double?)
        switch e.kind {
        case .scanDetected:
            (metric, value, threshold) = ("ports_touched", Double(e.portsTouched ?? 0), Double(thresholds.scanPorts))
        case .floodDetected:
            (metric, value, threshold) = ("syn_rate", e.rate ?? 0, thresholds.floodSynRate)
        case .connectionStorm:
            (metric, value, threshold) = ("connections_per_second", e.rate ?? 0,
                                          Double(thresholds.stormConnections) / thresholds.stormWindow)
        }
        self.init(rule: e.kind.rawValue, state: e.phase == .started ? .firing : .resolved, severity: "warning",
                  proto: e.proto, port: e.port, metric: metric, value: value, threshold: threshold,
                  since: e.time, message: namespace.map { "\($0.daemonLabel): \(e.message)" } ?? e.message, instance: instance,
                  namespace: namespace.flatMap { $0.isOwn ? nil : $0.daemonLabel })
    }
}

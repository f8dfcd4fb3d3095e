import PortwatchCore

/// Where an alert stands: pending (condition true, `for:` not yet elapsed) → firing → resolved.
public enum AlertState: String, Sendable, Hashable, Codable {
    case pending, firing, resolved
}

/// One alert of one rule on one port: the body of webhooks and exec stdin, and `/api/v1/alerts`.
///
/// JSON: `{"rule", "state", "severity", "protocol", "port", "metric", "value", "threshold",
/// "since", "message", "instance"}`, with `"netns"` after `port` for a port of another network
/// namespace: the same rule on the same port fires once per namespace.
public struct Alert: Sendable, Hashable, Codable {
    public var rule: String
    public var state: AlertState
    public var severity: String
    /// nil for alerts not about one port.
    public var proto: TransportProtocol?
    public var port: UInt16?
    public var metric: String
    public var value: Double
    public var threshold: Double?
    /// When the current state began (seconds since the epoch).
    public var since: Double
    public var message: String
    /// The host the daemon runs on (Alertmanager's `instance` label).
    public var instance: String
    /// For alerts of probe rules: the probed target (`host:port`); nil for port alerts.
    public var target: String?
    /// The network namespace (`NetworkNamespace.daemonLabel`) of an alert about a port of another
    /// namespace; nil for the daemon's own. Part of the alert's identity, as rule, port and target are.
    public var namespace: String?

    public init(rule: String, state: AlertState, severity: String, proto: TransportProtocol?, port: UInt16?,
                metric: String, value: Double, threshold: Double?, since: Double, message: String, instance: String,
                target: String? = nil, namespace: String? = nil) {
        self.rule = rule
        self.state = state
        self.severity = severity
        self.proto = proto
        self.port = port
        self.metric = metric
        self.value = value
        self.threshold = threshold
        self.since = since
        self.message = message
        self.instance = instance
        self.target = target
        self.namespace = namespace
    }
}

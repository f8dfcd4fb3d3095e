import PortwatchCore

/// What happened, as the event log, the API and `portwatch events` say it.
public enum EventKind: String, Sendable, Hashable, Codable, CaseIterable {
    case listenerStarted = "listener_started"
    case listenerStopped = "listener_stopped"
    case ownerChanged = "owner_changed"
    case newListener = "new_listener"
    case expectationFailed = "expectation_failed"
    case expectationMet = "expectation_met"
    case alertFiring = "alert_firing"
    case alertResolved = "alert_resolved"
    case scanDetected = "scan_detected"
    case floodDetected = "flood_detected"
    case connectionStorm = "connection_storm"
    case probeFailed = "probe_failed"
    case probeRecovered = "probe_recovered"
    case daemonStarted = "daemon_started"
    case daemonStopped = "daemon_stopped"
    case namespaceAdded = "namespace_added"
    case namespaceRemoved = "namespace_removed"
}

/// One entry of the event log: `{"time", "kind", "protocol", "port", "message", ...}`.
public struct MonitorEvent: Sendable, Hashable, Codable {
    /// Seconds since the epoch.
    public var time: Double
    public var kind: EventKind
    public var proto: TransportProtocol?
    public var port: UInt16?
    public var message: String
    /// Extra facts (rule name, owner, address, ...), serialized as more JSON fields.
    public var details: [String: String]

    public init(time: Double, kind: EventKind, proto: TransportProtocol? = nil, port: UInt16? = nil,
                message: String, details: [String: String] = [:]) {
        self.time = time
        self.kind = kind
        self.proto = proto
        self.port = port
        self.message = message
        self.details = details
    }
}

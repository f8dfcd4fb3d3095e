import Logging

/// Writes each alert to the daemon's log (stderr, the journal under systemd).
public struct LogChannel: AlertChannel {
    public let name: String
    private let logger: Logger

    /// Makes the channel; alerts go to `logger`.
    public init(name: String = "log", logger: Logger = Logger(label: "portwatch.alerts")) {
        self.name = name
        self.logger = logger
    }

    public func deliver(_ alert: Alert) async throws {
        var metadata: Logger.Metadata = [
            "rule": "\(alert.rule)", "state": "\(alert.state.rawValue)", "severity": "\(alert.severity)",
            "metric": "\(alert.metric)", "value": "\(alertNumber(alert.value))", "instance": "\(alert.instance)",
        ]
        if let proto = alert.proto { metadata["protocol"] = "\(proto.rawValue)" }
        if let port = alert.port { metadata["port"] = "\(port)" }
        if let namespace = alert.namespace { metadata["netns"] = "\(namespace)" }
        if let threshold = alert.threshold { metadata["threshold"] = "\(alertNumber(threshold))" }
        let level: Logger.Level = switch alert.state {
        case .resolved, .pending: .notice
        case .firing: alert.severity == "critical" ? .error : .warning
        }
        let text = alert.state == .resolved ? "alert \(alert.rule) resolved: \(alert.message)"
            : "alert \(alert.rule) firing: \(alert.message)"
        logger.log(level: level, "\(text)", metadata: metadata)
    }
}

import Logging
import PortwatchCore

/// Sends alerts to Alertmanager's v2 API (`POST {url}/api/v2/alerts`) with the labels
/// `alertname`, `protocol`, `port`, `severity`, `instance`, and `netns` for a port of another
/// network namespace (so Alertmanager keeps one alert per namespace). Firing alerts are re-sent on every
/// `refresh()` (each minute) so Alertmanager does not time them out; a resolved one is sent with
/// `endsAt` and its original `startsAt`.
public actor AlertmanagerChannel: AlertChannel {
    public nonisolated let name: String
    /// Alertmanager's base URL, without a trailing slash.
    public nonisolated let url: String
    private let poster: HTTPPoster
    /// Alerts firing now, by their label set, with the time they started firing.
    private var firing: [Key: Alert] = [:]

    struct Key: Hashable {
        var rule: String
        var proto: TransportProtocol?
        var port: UInt16?
        var target: String?
        var namespace: String?
    }

    /// `url` is Alertmanager's base URL, e.g. `http://127.0.0.1:9093`.
    public init(url: String, poster: HTTPPoster, name: String? = nil) {
        var base = url
        while base.hasSuffix("/") { base.removeLast() }
        self.url = base
        self.poster = poster
        self.name = name ?? "alertmanager \(base)"
    }

    public func deliver(_ alert: Alert) async throws {
        let key = Key(rule: alert.rule, proto: alert.proto, port: alert.port, target: alert.target,
                      namespace: alert.namespace)
        var startsAt = alert.since
        if alert.state == .resolved {
            startsAt = min(firing[key]?.since ?? alert.since, alert.since)
            firing[key] = nil
        } else {
            firing[key] = alert
        }
        try await post([Self.document(alert, startsAt: startsAt)])
    }

    public func refresh() async throws {
        guard !firing.isEmpty else { return }
        let docs = firing.values.sorted {
            ($0.rule, $0.namespace ?? "", $0.port ?? 0, $0.target ?? "")
                < ($1.rule, $1.namespace ?? "", $1.port ?? 0, $1.target ?? "")
        }
            .map { Self.document($0, startsAt: $0.since) }
        try await post(docs)
    }

    private func post(_ docs: [JSONValue]) async throws {
        try await poster.post(JSONValue.array(docs).serialized(), to: url + "/api/v2/alerts", channel: name)
    }

    /// One entry of the v2 `postableAlerts` array.
    static func document(_ alert: Alert, startsAt: Double) -> JSONValue {
        var labels: [(String, JSONValue)] = [("alertname", .string(alert.rule))]
        if let proto = alert.proto { labels.append(("protocol", .string(proto.rawValue))) }
        if let port = alert.port { labels.append(("port", .string(String(port)))) }
        if let namespace = alert.namespace { labels.append(("netns", .string(namespace))) }
        if let target = alert.target { labels.append(("target", .string(target))) }
        labels.append(("severity", .string(alert.severity)))
        labels.append(("instance", .string(alert.instance)))
        var description = "\(alert.metric) = \(alertNumber(alert.value))"
        if let t = alert.threshold { description += " (threshold \(alertNumber(t)))" }
        var pairs: [(String, JSONValue)] = [
            ("labels", .object(labels)),
            ("annotations", ["summary": .string(alert.message), "description": .string(description)]),
            ("startsAt", .string(rfc3339(startsAt))),
        ]
        if alert.state == .resolved { pairs.append(("endsAt", .string(rfc3339(alert.since)))) }
        return .object(pairs)
    }
}

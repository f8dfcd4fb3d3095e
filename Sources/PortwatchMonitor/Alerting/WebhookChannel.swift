/// POSTs the alert document (`Alert.json`) to a URL, with retries and backoff.
public struct WebhookChannel: AlertChannel {
    public let name: String
    /// Where the alert is POSTed.
    public let url: String
    private let poster: HTTPPoster

    /// Makes the channel; `name` defaults to "webhook URL".
    public init(url: String, poster: HTTPPoster, name: String? = nil) {
        self.url = url
        self.poster = poster
        self.name = name ?? "webhook \(url)"
    }

    public func deliver(_ alert: Alert) async throws {
        try await poster.post(alert.json.serialized(), to: url, channel: name)
    }
}

import PortwatchCore

/// A configured probe as the API and the dashboard show it: its latest result and when its
/// health last changed.
public struct ProbeStatus: Sendable, Hashable {
    public var config: ProbeConfig
    /// nil until the first probe finished.
    public var latest: ProbeResult?
    /// Epoch seconds of the first result with the current health (the last change).
    public var since: Double?

    public init(config: ProbeConfig, latest: ProbeResult? = nil, since: Double? = nil) {
        self.config = config
        self.latest = latest
        self.since = since
    }
}

/// A destination for alerts. The dispatcher gives each channel its own queue and worker, so a
/// channel may take its time (retries, a slow command) without holding up any other.
public protocol AlertChannel: Sendable {
    /// Unique among the daemon's channels; names the channel in logs and drop counts.
    var name: String { get }
    /// Delivers one alert that just became firing or resolved; throws when it finally could not.
    func deliver(_ alert: Alert) async throws
    /// Called every `AlertDispatcher.refreshInterval` on the channel's queue (Alertmanager re-sends
    /// what is still firing so it does not time out there).
    func refresh() async throws
}

extension AlertChannel {
    public func refresh() async throws {}
}

import Foundation
/// The history store as the live state and the rules read it.
///
/// GRDB reads are synchronous and short (indexed, bounded by `limit` and the span asked for);
/// they run on the caller's task.
public struct StoredHistory: HistoryReading {
    public let store: HistoryStore

    public init(store: HistoryStore) { self.store = store }

    public func history(_ port: MonitoredPort, since: Double, step: Double?) async throws -> HistorySeries {
        try store.history(port, since: since, until: .infinity, step: step)
    }

    public func events(since: Double, port: UInt16?, limit: Int) async throws -> [MonitorEvent] {
        try store.events(since: since, port: port, limit: limit)
    }

    public func events(since: Double, port: UInt16?, netns: NamespaceFilter?, limit: Int) async throws -> [MonitorEvent] {
        try store.events(since: since, port: port, netns: netns, limit: limit)
    }

    public func everListened() async throws -> Set<MonitoredPort> {
        try store.everListened()
    }

    public func probeHistory(target: String, since: Double) async throws -> ProbeHistory {
        try store.probeHistory(target: target, since: since, now: Date().timeIntervalSince1970)
    }

    /// Stored samples of every port since `since`, in time order (to warm the anomaly models).
    public func samples(since: Double) throws -> [PortSample] {
        var all: [PortSample] = []
        for port in try store.ports() {
            all += try store.history(port, since: since, until: .infinity, step: nil).samples
        }
        return all.sorted { $0.time < $1.time }
    }
}

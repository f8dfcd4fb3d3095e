/// Stored history as the live state and the rules read it: the GRDB store implements it for
/// the daemon, `InMemoryHistory` for tests.
public protocol HistoryReading: Sendable {
    /// Samples of a port since `since` (epoch seconds); `step` nil: the finest resolution kept.
    func history(_ port: MonitoredPort, since: Double, step: Double?) async throws -> HistorySeries
    /// Events since `since`, optionally of one port, oldest first, at most `limit`.
    func events(since: Double, port: UInt16?, limit: Int) async throws -> [MonitorEvent]
    /// Events since `since`, optionally of one port and of one network namespace, oldest first, at most `limit`.
    func events(since: Double, port: UInt16?, netns: NamespaceFilter?, limit: Int) async throws -> [MonitorEvent]
    /// Every port that listened at some sample in the history (the `new_listener` detector).
    func everListened() async throws -> Set<MonitoredPort>
    /// Stored results of a probe target since `since` (epoch seconds).
    func probeHistory(target: String, since: Double) async throws -> ProbeHistory
}

extension HistoryReading {
    /// Stores that cannot filter by namespace themselves: filtered after reading (test stores).
    public func events(since: Double, port: UInt16?, netns: NamespaceFilter?, limit: Int) async throws -> [MonitorEvent] {
        let all = try await events(since: since, port: port, limit: netns == nil ? limit : Int.max)
        guard let netns else { return all }
        return Array(all.filter { netns.matches($0.namespace) }.suffix(max(0, limit)))
    }

    /// No probe history kept (test stores).
    public func probeHistory(target: String, since: Double) async throws -> ProbeHistory {
        ProbeHistory(target: target, stepSeconds: 0, points: [])
    }
}

/// Where samples and events are kept (the GRDB writer; `InMemoryHistory` in tests).
public protocol HistoryWriting: Sendable {
    func write(samples: [PortSample], events: [MonitorEvent]) async throws
}

/// A sink that writes every sample's rows to a history writer. A failed write goes to `onError`
/// (which logs or counts it) and sampling goes on.
public struct HistorySink: SampleSink {
    private let writer: any HistoryWriting
    private let onError: @Sendable (any Error) -> Void

    public init(writer: any HistoryWriting, onError: @escaping @Sendable (any Error) -> Void) {
        self.writer = writer
        self.onError = onError
    }

    public func consume(_ latest: LatestSample) async {
        do {
            try await writer.write(samples: latest.samples, events: [])
        } catch {
            onError(error)
        }
    }
}

import PortwatchCore

/// Stored samples of one port at one resolution (`history` and `/api/v1/ports/{p}/{n}/history`).
///
/// Each point is a `PortSample`: for roll-ups, `time` is the step's start, `windowSeconds` the
/// time the step covers, window counters are sums, and connections / accept queue are the
/// step's mean (rounded) — so rates read the same at every resolution.
public struct HistorySeries: Sendable, Hashable {
    public var proto: TransportProtocol
    public var port: UInt16
    public var stepSeconds: Double
    public var samples: [PortSample]
    /// The network namespace (the daemon's label) of a port in another namespace; nil for the daemon's own.
    public var namespace: String? = nil

    public init(proto: TransportProtocol, port: UInt16, stepSeconds: Double, samples: [PortSample],
                namespace: String? = nil) {
        self.proto = proto
        self.port = port
        self.stepSeconds = stepSeconds
        self.samples = samples
        self.namespace = namespace
    }
}

/// The daemon's latest sample: the snapshot, the window that ended with it, and its rows.
public struct LatestSample: Sendable {
    public var snapshot: PortSnapshot
    /// nil for the first (baseline) sample.
    public var report: WindowReport?
    public var samples: [PortSample]
    /// The other network namespaces sampled (`namespaces:` in the config), each with its window.
    public var namespaceParts: [NamespacePart] = []
    /// Namespaces that appeared or vanished since the previous sample.
    public var namespaceEvents: [MonitorEvent] = []
    /// Labels of namespaces deleted and made again under the same name since the previous sample
    /// (a new inode): their listeners and alerts are the new namespace's, not the old one's.
    public var replacedNamespaces: Set<String> = []
    /// The daemon's own network namespace, which its `system_errors_by_namespace` entry names;
    /// nil where it is not known (samples made up in tests).
    public var ownNamespace: NetworkNamespace? = nil

    public init(snapshot: PortSnapshot, report: WindowReport?, samples: [PortSample]) {
        self.snapshot = snapshot
        self.report = report
        self.samples = samples
    }
}

/// One message of `/api/v1/stream` (Server-Sent Events `sample` and `event`).
public enum StreamMessage: Sendable {
    case sample(LatestSample)
    case event(MonitorEvent)
}

/// What the HTTP layer reads: the daemon's live state and its history. The daemon implements it
/// over the sampler and the history store; router tests implement it over fixed values.
public protocol MonitorDataSource: Sendable {
    /// The sampling interval (for `/healthz`: stale after three intervals).
    var interval: Duration { get }
    /// The latest sample, nil before the first one.
    func latest() async -> LatestSample?
    /// Stored history of a port since `since` (epoch seconds), in `port.namespace` (nil: the
    /// daemon's own; a namespace never stored throws a usage error); `step` nil means the finest
    /// stored resolution that covers the span.
    func history(_ port: MonitoredPort, since: Double, step: Double?) async throws -> HistorySeries
    /// Events since `since`, optionally of one port, oldest first, at most `limit`.
    func events(since: Double, port: UInt16?, limit: Int) async throws -> [MonitorEvent]
    /// Events as above, of one network namespace when `netns` is given.
    func events(since: Double, port: UInt16?, netns: NamespaceFilter?, limit: Int) async throws -> [MonitorEvent]
    /// Alerts pending or firing now.
    func alerts() async -> [Alert]
    /// A stream of samples and events from now on; ends when the subscriber stops iterating.
    func subscribe() async -> AsyncStream<StreamMessage>
    /// Configured probes with their latest results, in config order.
    func probes() async -> [ProbeStatus]
    /// Stored results of a configured probe target since `since` (epoch seconds); nil when no
    /// configured probe has that target.
    func probeHistory(_ target: String, since: Double) async throws -> ProbeHistory?
}

extension MonitorDataSource {
    /// Sources that cannot filter by namespace themselves: filtered after reading (router tests).
    public func events(since: Double, port: UInt16?, netns: NamespaceFilter?, limit: Int) async throws -> [MonitorEvent] {
        let all = try await events(since: since, port: port, limit: netns == nil ? limit : Int.max)
        guard let netns else { return all }
        return Array(all.filter { netns.matches($0.namespace) }.suffix(max(0, limit)))
    }
}

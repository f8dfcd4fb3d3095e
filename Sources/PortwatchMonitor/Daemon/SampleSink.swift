/// Something that takes every sample the daemon makes: the live state behind the API and the
/// stream, the history writer, the rule engine, the metrics, the log.
///
/// Sinks run one after another, in the order the daemon was given them, on the sampler's task:
/// a sink that needs slow work (network, disk) queues it and returns, so sampling stays on time.
public protocol SampleSink: Sendable {
    func consume(_ latest: LatestSample) async
}

/// A sink made of a closure, for glue code and tests.
public struct ClosureSink: SampleSink {
    private let body: @Sendable (LatestSample) async -> Void

    public init(_ body: @escaping @Sendable (LatestSample) async -> Void) { self.body = body }

    public func consume(_ latest: LatestSample) async { await body(latest) }
}

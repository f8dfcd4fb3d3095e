#if canImport(Glibc)
import Glibc
#endif

/// Successive snapshots with exact per-port deltas between them: the engine behind
/// `--sample`, `top` and the daemon. One instance is driven from one task at a time.
public final class Sampler {
    public let options: SnapshotOptions
    private let source: any SocketSource
    private let events: DestroyEventStream?
    private var tracker = TrafficTracker()
    /// Why closed connections are not counted, when destroy events are unavailable.
    public let eventsUnavailable: String?

    /// Opens the destroy-event stream when `closedConnections` is set; without the privilege
    /// sampling still works, and `eventsUnavailable` says what is missing.
    public init(options: SnapshotOptions, source: any SocketSource = defaultSocketSource(),
                closedConnections: Bool = true) {
        self.options = options
        self.source = source
        var stream: DestroyEventStream? = nil
        var reason: String? = nil
        if closedConnections {
            do {
                stream = try DestroyEventStream()
            } catch {
                reason = error.message
            }
        }
        stream?.start()
        self.events = stream
        self.eventsUnavailable = closedConnections ? reason : nil
    }

    deinit { events?.stop() }

    /// Takes the baseline snapshot.
    @discardableResult
    public func start() throws(PortwatchError) -> PortSnapshot {
        let snapshot = try PortSnapshot.take(options, source: source)
        _ = events?.drain()
        tracker.start(snapshot, system: SystemCounters.read(), classifier: snapshot.classifier)
        return snapshot
    }

    /// Takes the next snapshot and the activity since the previous one.
    public func sample() throws(PortwatchError) -> (PortSnapshot, WindowReport) {
        let snapshot = try PortSnapshot.take(options, source: source)
        let batch = events?.drain()
        var report = tracker.advance(snapshot, destroyed: batch, system: SystemCounters.read(),
                                      classifier: snapshot.classifier)
        if let reason = eventsUnavailable {
            report.notes.removeAll { $0.hasPrefix("connections closed between samples") }
            report.notes.append("connections closed between samples are not counted: \(reason)")
        }
        return (snapshot, report)
    }

    /// Sockets the tracker follows.
    public var trackedSockets: Int { tracker.trackedSockets }
}

/// Sleeps for a number of seconds (interrupted sleeps resume).
public func sleepSeconds(_ seconds: Double) {
    guard seconds > 0 else { return }
    var request = timespec(tv_sec: Int(seconds), tv_nsec: Int((seconds - Double(Int(seconds))) * 1e9))
    var remaining = timespec()
    while nanosleep(&request, &remaining) != 0 && errno == EINTR { request = remaining }
}

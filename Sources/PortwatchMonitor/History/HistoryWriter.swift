import Foundation
import Logging
import PortwatchCore
import ServiceLifecycle
import Synchronization

/// Writes the sampler's batches into the history store without ever making the sampler wait.
///
/// `submit` only queues (a bounded backlog; when it is full the oldest batch is dropped and
/// counted). `run` writes the queue in order; when the disk refuses (read-only, full) it logs
/// once a minute, keeps retrying the same batch and resumes when the disk takes writes again,
/// so what was queued meanwhile is not lost unless the backlog overflowed. It also runs the
/// store's `maintain` every `maintainEvery`.
public actor HistoryWriter: Service {
    /// One sample's worth of history.
    public struct Batch: Sendable {
        public var samples: [PortSample]
        public var events: [MonitorEvent]
        public var alerts: [Alert]
        /// Probe results (the probe service's batches carry only these).
        public var probes: [ProbeResult]

        public init(samples: [PortSample], events: [MonitorEvent] = [], alerts: [Alert] = [],
                    probes: [ProbeResult] = []) {
            self.samples = samples
            self.events = events
            self.alerts = alerts
            self.probes = probes
        }
    }

    /// Counters read from any thread (metrics, health) without waiting for the actor.
    private final class Counters: Sendable {
        let errors = Atomic<Int>(0)
        let dropped = Atomic<Int>(0)
        let written = Atomic<Int>(0)
        let stopping = Atomic<Bool>(false)
    }

    public let store: HistoryStore
    private let logger: Logger
    private let continuation: AsyncStream<Batch>.Continuation
    private let stream: AsyncStream<Batch>
    private let counters = Counters()
    private let retryDelay: Duration
    private let maintainEvery: Duration
    private let errorLogEvery: Double
    private let now: @Sendable () -> Double
    private var lastErrorLog = -Double.infinity
    private var errorsSinceLog = 0
    private var failing = false

    /// - Parameters:
    ///   - backlog: batches held in memory while the disk is slow or refusing (720 = an hour at 5 s).
    ///   - retryDelay: pause between attempts at a batch that failed.
    ///   - maintainEvery: how often roll-ups, retention and the size cap run.
    ///   - errorLogEvery: seconds between two log lines about failing writes.
    public init(store: HistoryStore, backlog: Int = 720, retryDelay: Duration = .seconds(1),
                maintainEvery: Duration = .seconds(60), errorLogEvery: Double = 60,
                logger: Logger = Logger(label: "portwatch.history"),
                now: @escaping @Sendable () -> Double = { Date().timeIntervalSince1970 }) {
        self.store = store
        self.logger = logger
        self.retryDelay = retryDelay
        self.maintainEvery = maintainEvery
        self.errorLogEvery = errorLogEvery
        self.now = now
        (stream, continuation) = AsyncStream.makeStream(of: Batch.self, bufferingPolicy: .bufferingNewest(max(1, backlog)))
    }

    /// Queues a batch and returns at once; drops (and counts) the oldest queued batch when the backlog is full.
    public nonisolated func submit(_ batch: Batch) {
        if case .enqueued = continuation.yield(batch) { return }
        counters.dropped.add(1, ordering: .relaxed)
    }

    /// Queues samples and events (see `submit(_:)`).
    public nonisolated func submit(samples: [PortSample], events: [MonitorEvent] = []) {
        submit(Batch(samples: samples, events: events))
    }

    /// Failed attempts to write (each retry counts): `portwatch_history_write_errors_total`.
    public nonisolated var writeErrors: Int { counters.errors.load(ordering: .relaxed) }
    /// Batches lost: backlog overflow, or still failing at shutdown.
    public nonisolated var droppedBatches: Int { counters.dropped.load(ordering: .relaxed) }
    /// Batches written.
    public nonisolated var writtenBatches: Int { counters.written.load(ordering: .relaxed) }

    /// Writes until graceful shutdown or cancellation; what is queued at shutdown is written
    /// first (unless the disk still refuses it).
    public func run() async throws {
        let continuation = continuation
        let counters = counters
        await withGracefulShutdownHandler {
            await withTaskCancellationHandler {
                await withTaskGroup(of: Void.self) { group in
                    group.addTask { await self.writeLoop() }
                    group.addTask { await self.maintainLoop() }
                    // The write loop ends when the queue is finished and drained; maintenance then stops.
                    await group.next()
                    group.cancelAll()
                }
            } onCancel: {
                counters.stopping.store(true, ordering: .relaxed)
                continuation.finish()
            }
        } onGracefulShutdown: {
            counters.stopping.store(true, ordering: .relaxed)
            continuation.finish()
        }
        try? store.checkpoint()
    }

    private func writeLoop() async {
        for await batch in stream {
            await write(batch)
        }
    }

    private func maintainLoop() async {
        while !Task.isCancelled {
            do { try await Task.sleep(for: maintainEvery) } catch { return }
            maintainNow()
        }
    }

    /// Runs roll-ups, retention and the size cap now.
    public func maintainNow() {
        do {
            try store.maintain(now: now())
        } catch {
            failed(error, what: "maintaining")
        }
    }

    private func write(_ batch: Batch) async {
        var pending = batch
        while true {
            do {
                if !pending.samples.isEmpty || !pending.events.isEmpty {
                    try store.write(samples: pending.samples, events: pending.events)
                    // Written: a retry of the alerts below must not store these twice.
                    pending.samples = []
                    pending.events = []
                }
                if !pending.probes.isEmpty {
                    try store.recordProbes(pending.probes)
                    pending.probes = []
                }
                try store.recordAlerts(pending.alerts)
                counters.written.add(1, ordering: .relaxed)
                if failing {
                    failing = false
                    logger.notice("history writes resumed", metadata: ["errors": "\(errorsSinceLog)"])
                    errorsSinceLog = 0
                    lastErrorLog = -.infinity
                }
                return
            } catch {
                failed(error, what: "writing")
                if counters.stopping.load(ordering: .relaxed) || Task.isCancelled {
                    counters.dropped.add(1, ordering: .relaxed)
                    return
                }
                try? await Task.sleep(for: retryDelay)
            }
        }
    }

    private func failed(_ error: Error, what: String) {
        counters.errors.add(1, ordering: .relaxed)
        failing = true
        errorsSinceLog += 1
        let t = now()
        guard t - lastErrorLog >= errorLogEvery else { return }
        lastErrorLog = t
        logger.error("history \(what) failed; retrying (samples are queued meanwhile)",
                     metadata: ["error": "\(error)", "errors": "\(errorsSinceLog)", "path": "\(store.path)"])
    }
}

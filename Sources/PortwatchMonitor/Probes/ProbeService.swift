import Logging
import PortwatchCore
import ServiceLifecycle
import Synchronization

/// Probes every configured target on its own schedule and hands each result to `deliver`.
///
/// One child task per target: a slow or silent target never delays another, and none of them the
/// sampler (the prober's blocking work runs on threads of its own). Each wait is the target's
/// interval spread by up to ±10% at random, and the first probe comes within the first tenth of an
/// interval, so many targets do not fire in step. `update` (SIGHUP) takes a new list: the children
/// are restarted with it within a second. Graceful shutdown cancels the children; a probe in
/// flight is abandoned and its result dropped.
public final class ProbeService: Service, Sendable {
    private let prober: any Prober
    private let deliver: @Sendable (ProbeResult) async -> Void
    private let logger: Logger
    private let current: Mutex<(probes: [ProbeConfig], version: Int)>

    /// `prober` does the probing (`NetworkProber` in the daemon); `deliver` gets every
    /// result, in each target's order (live state, rules, metrics, history).
    public init(probes: [ProbeConfig], prober: any Prober, logger: Logger,
                deliver: @escaping @Sendable (ProbeResult) async -> Void) {
        self.prober = prober
        self.deliver = deliver
        self.logger = logger
        self.current = Mutex((probes, 0))
    }

    /// The targets probed now.
    public var probes: [ProbeConfig] { current.withLock { $0.probes } }

    /// Replaces the targets (a reload); an unchanged list changes nothing.
    public func update(_ probes: [ProbeConfig]) {
        current.withLock { state in
            guard state.probes != probes else { return }
            state = (probes, state.version + 1)
        }
    }

    public func run() async throws {
        try? await cancelWhenGracefulShutdown { [self] in
            while !Task.isCancelled {
                let (probes, version) = current.withLock { $0 }
                if !probes.isEmpty {
                    logger.info("probing \(probes.count) target\(probes.count == 1 ? "" : "s")")
                }
                await withTaskGroup(of: Void.self) { group in
                    for probe in probes {
                        group.addTask { await self.loop(probe) }
                    }
                    // Ends when the list changes (the children are then restarted) or on cancellation.
                    group.addTask {
                        while !Task.isCancelled, self.current.withLock({ $0.version }) == version {
                            try? await Task.sleep(for: .seconds(1))
                        }
                    }
                    await group.next()
                    group.cancelAll()
                }
            }
        }
        logger.debug("probe service stopped")
    }

    /// One target: probe, deliver, wait, until cancelled.
    private func loop(_ probe: ProbeConfig) async {
        let interval = probe.interval.alertingSeconds
        var next = ContinuousClock.now.advanced(by: .seconds(Double.random(in: 0...(interval * ProbeConfig.jitter))))
        while !Task.isCancelled {
            do {
                try await Task.sleep(until: next, clock: .continuous)
            } catch {
                return
            }
            let started = ContinuousClock.now
            let result = await prober.probe(probe.target, options: probe.options)
            if Task.isCancelled { return }
            await deliver(result)
            let spread = interval * (1 + Double.random(in: -ProbeConfig.jitter...ProbeConfig.jitter))
            next = started.advanced(by: .seconds(spread))
            // After a probe longer than its interval the next one starts at once, not in a burst.
            let now = ContinuousClock.now
            if next < now { next = now }
        }
    }
}

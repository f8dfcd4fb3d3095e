import PortwatchCore
@testable import PortwatchMonitor
import ServiceLifecycle
import Synchronization
import Testing

/// A channel that holds every delivery until the test releases it: a receiver that hangs.
private final class HangingChannel: AlertChannel {
    let name = "hanging"
    let started = Atomic<Int>(0)
    /// One element per delivery begun.
    let starts: AsyncStream<Void>
    private let began: AsyncStream<Void>.Continuation
    private let gate: AsyncStream<Void>
    private let open: AsyncStream<Void>.Continuation

    init() {
        (gate, open) = AsyncStream.makeStream(of: Void.self)
        (starts, began) = AsyncStream.makeStream(of: Void.self)
    }

    func deliver(_ alert: Alert) async throws {
        started.add(1, ordering: .relaxed)
        began.yield()
        for await _ in gate { return }
    }

    func release() { open.finish() }
}

/// What the rule sink handed to history.
private actor Recorded {
    var events: [MonitorEvent] = []
    var alerts: [Alert] = []
    func add(_ e: [MonitorEvent], _ a: [Alert]) {
        events += e
        alerts += a
    }
}

@Suite struct RuleSinkTests {
    /// The sampler awaits each sink: with a channel that never answers, every sample's rule sink
    /// must still return (it only queues), or this test hangs and its time limit fails it.
    @Test(.timeLimit(.minutes(1)))
    func aHangingChannelNeverDelaysTheRuleSink() async throws {
        var config = MonitorConfig()
        config.interval = .seconds(1)
        config.rules = [RuleConfig(name: "busy", ports: "443", metric: .connectionsInState("established"), above: 0)]
        let channel = HangingChannel()
        let dispatcher = AlertDispatcher(channels: [channel], capacity: 4)
        let history = InMemoryHistory()
        let state = MonitorState(interval: config.interval, history: history)
        let recorded = Recorded()
        let sink = RuleSink(
            engine: RuleEngine(config: config, instance: "test", everListened: [], firstStart: true),
            state: state,
            outputs: RuleOutputs(record: { _, events, alerts in await recorded.add(events, alerts) },
                                 notify: { await dispatcher.enqueue($0) }))
        var base = try LoopbackSampler.once()
        var counts = ConnectionCounts()

        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await dispatcher.run() }
            // Alternating busy and idle: each turn fires or resolves (for: 0, resolve after 3 s).
            for i in 0..<40 {
                counts.established = (i / 5) % 2 == 0 ? 3 : 0
                base.snapshot.takenAt = 1_800_000_000 + Double(i)
                base.samples = [PortSample(time: base.snapshot.takenAt, proto: .tcp, port: 443, listening: true,
                                           addresses: ["0.0.0.0"], connections: counts, windowSeconds: 1)]
                await sink.consume(base)
            }
            for await _ in channel.starts { break }
            let alerts = await recorded.alerts
            // The first notification is stuck in the channel; the rest queued (and the oldest dropped).
            #expect(channel.started.load(ordering: .relaxed) == 1)
            #expect(alerts.contains { $0.state == .firing } && alerts.contains { $0.state == .resolved }, "\(alerts)")
            #expect(alerts.count > 4)
            #expect(await dispatcher.dropped()["hanging"] ?? 0 > 0)
            #expect(await recorded.events.contains { $0.kind == .alertFiring })
            channel.release()
            group.cancelAll()
        }
    }
}

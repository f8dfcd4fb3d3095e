import Testing
@testable import PortwatchMonitor
import PortwatchCore

#if canImport(Glibc)
import Glibc
#endif

/// A seeded generator (SplitMix64) so every run sees the same noise.
struct SeededRandom: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A standard normal deviate (Box–Muller).
    mutating func gaussian() -> Double {
        let u1 = Double.random(in: Double.ulpOfOne..<1, using: &self)
        let u2 = Double.random(in: 0..<1, using: &self)
        return (-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2)
    }
}

private let start: Double = 1_800_000_000 - 1_800_000_000.truncatingRemainder(dividingBy: 604_800)

/// Drives an anomaly rule through the engine with received_bps = `value(t)` every 5 s and
/// returns the times of firing and resolved notifications.
private func run(_ seconds: Double, sigma: Double = 4, warmup: Duration = .seconds(3600), forDuration: Duration = .seconds(60),
                 engine existing: inout RuleEngine?, from t0: Double = start, value: (Double) -> Double) -> [(Double, AlertState)] {
    if existing == nil {
        var c = MonitorConfig()
        c.rules = [RuleConfig(name: "rx-anomaly", ports: "443", metric: .receivedBps,
                              anomaly: AnomalyConfig(sigma: sigma, warmup: warmup), forDuration: forDuration)]
        existing = RuleEngine(config: c, instance: "h", everListened: [], firstStart: true)
    }
    var out: [(Double, AlertState)] = []
    var t = t0
    while t < t0 + seconds {
        let bits = max(0, value(t))
        var s = PortSample(time: t, proto: .tcp, port: 443, listening: true, windowSeconds: 5)
        s.bytesReceived = UInt64((bits * 5 / 8).rounded())
        for n in existing!.evaluate([s], at: t).notifications { out.append((t, n.state)) }
        t += 5
    }
    return out
}

@Suite struct AnomalyTests {
    @Test func steadyNoisySeriesNeverFires() {
        var rng = SeededRandom(state: 7)
        var engine: RuleEngine?
        // Three days of points around 80 kbit/s with 2% noise.
        let notes = run(3 * 86400, engine: &engine) { _ in 80_000 + 1600 * rng.gaussian() }
        #expect(notes.isEmpty)
    }

    @Test func sixSigmaStepFiresAfterFor() throws {
        var rng = SeededRandom(state: 11)
        var engine: RuleEngine?
        let noise = 1000.0
        let stepAt = start + 4 * 3600
        let notes = run(5 * 3600, engine: &engine) { t in
            80_000 + noise * rng.gaussian() + (t >= stepAt ? 6 * noise : 0)
        }
        let firing = try #require(notes.first { $0.1 == .firing })
        #expect(firing.0 >= stepAt + 60, "fires only after for: (1 min)")
        #expect(firing.0 <= stepAt + 600, "and soon after it")
        #expect(notes.allSatisfy { $0.0 >= stepAt }, "nothing before the step")
    }

    @Test func warmupIsRespected() {
        var rng = SeededRandom(state: 3)
        var engine: RuleEngine?
        // A 10-minute spike 20 minutes in, inside the 1 h warm-up: silence. The same spike at 2 h fires.
        func spike(_ t: Double, at s: Double) -> Bool { t >= start + s && t < start + s + 600 }
        let notes = run(3 * 3600, forDuration: .seconds(30), engine: &engine) { t in
            (spike(t, at: 1200) || spike(t, at: 7200) ? 400_000 : 80_000) + 1000 * rng.gaussian()
        }
        #expect(!notes.contains { $0.0 < start + 3600 }, "no alert during the warm-up")
        let first = notes.first { $0.1 == .firing }?.0
        #expect(first.map { $0 >= start + 7200 + 30 && $0 < start + 7200 + 600 } == true,
                "after the warm-up the same spike fires once for: has passed")
    }

    @Test func flatSeriesDoesNotFireOnTinyNoise() {
        var model = AnomalyModel(sigma: 4, warmup: 60)
        var fired = 0
        for i in 0..<5000 {
            // 100 exactly, then an occasional ±1 (a connection more or less).
            let v = 100.0 + (i % 97 == 0 ? 1 : 0) - (i % 89 == 0 ? 1 : 0)
            if model.observe(v, at: Double(i) * 5).anomalous { fired += 1 }
        }
        #expect(fired == 0)
        #expect(model.judge(200, at: 5000 * 5).anomalous, "a real jump on a flat series still counts")
    }

    @Test func anIncidentDoesNotBecomeTheBaseline() {
        var rng = SeededRandom(state: 5)
        var model = AnomalyModel(sigma: 4, warmup: 600)
        var t = 0.0
        for _ in 0..<2000 { _ = model.observe(1000 + 10 * rng.gaussian(), at: t); t += 5 }
        // Half an hour at 10x: still anomalous at its end.
        var last = model.judge(0, at: t)
        for _ in 0..<360 { last = model.observe(10_000 + 10 * rng.gaussian(), at: t); t += 5 }
        #expect(last.anomalous)
        #expect(abs(model.judge(1000, at: t).expected - 1000) < 1000, "the mean stayed near the normal level")
    }

    @Test func hourOfWeekProfileExpectsADailyPeakAfterAWeek() {
        var rng = SeededRandom(state: 21)
        var engine: RuleEngine?
        // Every day 14:00-15:00 traffic is ten times the rest of the day.
        func series(_ t: Double) -> Double {
            let hourOfDay = Int((t - start) / 3600) % 24
            return (hourOfDay == 14 ? 800_000 : 80_000) + 1500 * rng.gaussian()
        }
        let firstWeek = run(AnomalyModel.week, forDuration: .seconds(60), engine: &engine, value: series)
        #expect(firstWeek.contains { $0.1 == .firing }, "a model without a week of data finds the peak anomalous")
        // Everything resolved before the second week starts.
        #expect(engine?.activeAlerts.isEmpty == true)
        let secondWeek = run(3 * 86400, forDuration: .seconds(60), engine: &engine, from: start + AnomalyModel.week,
                             value: series)
        #expect(secondWeek.isEmpty, "once a week exists the recurring peak is expected")
        // But the profile still catches what is new at that hour: a peak twice as high.
        let unusual = run(3600, forDuration: .seconds(60), engine: &engine, from: start + AnomalyModel.week + 3 * 86400 + 14 * 3600) {
            _ in 1_600_000 + 1500 * rng.gaussian()
        }
        #expect(unusual.contains { $0.1 == .firing })
    }

    @Test func hourOfWeekWrapsWeekly() {
        #expect(AnomalyModel.hourOfWeek(0) == 0)
        #expect(AnomalyModel.hourOfWeek(3600 * 167 + 10) == 167)
        #expect(AnomalyModel.hourOfWeek(AnomalyModel.week + 7200) == 2)
        #expect(AnomalyModel.hourOfWeek(-1) == 167)
    }

    @Test func storedHistoryWarmsTheModelUpAtStart() {
        var rng = SeededRandom(state: 9)
        var c = MonitorConfig()
        c.rules = [RuleConfig(name: "conn-anomaly", ports: "443", metric: .connections,
                              anomaly: AnomalyConfig(sigma: 4, warmup: .seconds(3600)))]
        func sample(_ t: Double, _ n: Int) -> PortSample {
            var counts = ConnectionCounts()
            counts.established = n
            return PortSample(time: t, proto: .tcp, port: 443, listening: true, connections: counts, windowSeconds: 5)
        }
        let history = (0..<1440).map { sample(start + Double($0) * 5, 200 + Int((5 * rng.gaussian()).rounded())) }
        let now = start + 1440 * 5
        var warmed = RuleEngine(config: c, instance: "h", everListened: [], firstStart: false)
        warmed.learn(history: history)
        var cold = RuleEngine(config: c, instance: "h", everListened: [], firstStart: false)
        // A jump to 400 connections right after a restart: only the engine that read its history knows it is odd.
        #expect(warmed.evaluate([sample(now, 400)], at: now).notifications.map(\.state) == [.firing])
        #expect(cold.evaluate([sample(now, 400)], at: now).notifications.isEmpty)
    }
}

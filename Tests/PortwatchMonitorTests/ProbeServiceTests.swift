import Foundation
import Logging
import PortwatchCore
import PortwatchProbe
import ServiceLifecycle
@testable import PortwatchMonitor
import Testing
#if canImport(Glibc)
import Glibc
#endif

// The daemon's probes against real loopback listeners: what the daemon's prober (NetworkProber) measures, and the
// probe service's events, rules, reloads and cancellation.

@Suite("Daemon probes")
struct ProbeServiceTests {
    @Test func connectProberMeasuresAnOpenPortAndNamesAClosedOne() async throws {
        let listener = try ReopenableListener()
        var options = ProbeConfig.defaultOptions
        options.count = 5
        options.timeout = 2
        let open = await NetworkProber().probe(listener.target, options: options)
        #expect(open.state == .open && open.healthy && open.problems.isEmpty, "\(open)")
        #expect(open.address == "127.0.0.1")
        #expect(open.loss == 0)
        let latency = try #require(open.latency)
        #expect(latency.min > 0 && latency.min <= latency.median && latency.median <= latency.p95
                && latency.p95 <= latency.p99 && latency.p99 <= latency.max, "\(latency)")

        listener.close()
        let closed = await NetworkProber().probe(listener.target, options: options)
        #expect(closed.state == .closed && !closed.healthy)
        #expect(closed.problems == ["closed (refused)"])
        #expect(closed.latency == nil && closed.loss == 1)
    }

    @Test func sendAndExpectReadTheAnswer() async throws {
        var options = ProbeConfig.defaultOptions
        options.send = Array("PING\r\n".utf8)
        options.expect = "^\\+PONG"
        let good = try LineServer(reply: "+PONG\r\nmore\r\n", connections: 2)
        let matched = await NetworkProber().probe(good.target, options: options)
        #expect(matched.healthy, "\(matched.problems)")
        #expect(matched.expect == ExpectReport(matched: true, received: "+PONG"))

        let bad = try LineServer(reply: "-ERR unknown\r\n", connections: 2)
        let failed = await NetworkProber().probe(bad.target, options: options)
        #expect(failed.state == .open && !failed.healthy)
        #expect(failed.expect?.matched == false)
        #expect(failed.problems == ["reply did not match --expect: -ERR unknown"])
    }

    @Test func configuredIPv6AndUDPTargetsAreProbed() async throws {
        // An IPv6 loopback listener, written as a config writes it.
        let fd = socket(AF_INET6, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        try #require(fd >= 0)
        defer { close(fd) }
        var addr = sockaddr_in6()
        addr.sin6_family = sa_family_t(AF_INET6)
        addr.sin6_addr = in6addr_loopback
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) }
        }
        try #require(bound == 0 && listen(fd, 8) == 0, "no IPv6 loopback here")
        var name = sockaddr_in6()
        var length = socklen_t(MemoryLayout<sockaddr_in6>.size)
        _ = withUnsafeMutablePointer(to: &name) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        let v6Port = UInt16(bigEndian: name.sin6_port)
        let quiet = try LoopbackSocket(.udp)
        // A UDP port that was bound a moment ago and is not any more: the kernel answers ICMP port-unreachable.
        let gonePort: UInt16 = try {
            let udp = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            try #require(udp >= 0)
            defer { close(udp) }
            var a = sockaddr_in()
            a.sin_family = sa_family_t(AF_INET)
            a.sin_addr.s_addr = inet_addr("127.0.0.1")
            let rc = withUnsafePointer(to: &a) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(udp, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            try #require(rc == 0)
            return boundPort(udp)
        }()
        let config = try ConfigLoader.parse("""
            probes:
              - {target: "[::1]:\(v6Port)", timeout: 1s}
              - {target: "127.0.0.1:\(quiet.port)", udp: true, timeout: 300ms, send: "hello"}
              - {target: "127.0.0.1:\(gonePort)", udp: true, timeout: 1s}
            """, file: "probes.yml")
        let results = await withTaskGroup(of: ProbeResult.self) { group in
            for probe in config.probes {
                group.addTask { await NetworkProber().probe(probe.target, options: probe.options) }
            }
            return await group.reduce(into: [String: ProbeResult]()) { $0[$1.target.text] = $1 }
        }
        let v6 = try #require(results["[::1]:\(v6Port)"])
        #expect(v6.state == .open && v6.healthy && v6.address == "::1")
        let silent = try #require(results["127.0.0.1:\(quiet.port)"])
        #expect(silent.state == .openFiltered && !silent.healthy, "silence cannot tell a service from a drop: \(silent.problems)")
        let refused = try #require(results["127.0.0.1:\(gonePort)"])
        #expect(refused.state == .closed && !refused.healthy, "ICMP port-unreachable: \(refused)")
    }

    @Test func aCancelledProbeReturnsAtOnce() async throws {
        let saturated = try SaturatedListener()
        defer { saturated.close() }
        var options = ProbeConfig.defaultOptions
        options.timeout = 60
        let probing = Task { await NetworkProber().probe(saturated.target, options: options) }
        probing.cancel()
        let result = await probing.value
        #expect(result.problems == ["probe cancelled"] && !result.healthy)
    }

    // The limit is generous because the whole suite shares two cooperative threads with tests
    // that block them; the probe's own timeout (an hour) is what only the shutdown can cut short.
    @Test(.timeLimit(.minutes(5)))
    func gracefulShutdownEndsAProbeInFlight() async throws {
        let saturated = try SaturatedListener()
        defer { saturated.close() }
        var probe = testProbe(saturated.target)
        // Far beyond the test's time limit: only the shutdown can end this probe in time.
        probe.options.timeout = 3600
        let (started, signal) = AsyncStream.makeStream(of: Void.self)
        let pipeline = await ProbePipeline(probes: [probe], prober: AnnouncingProber(started: signal))
        let group = ServiceGroup(configuration: ServiceGroupConfiguration(
            services: [pipeline.service], gracefulShutdownSignals: [], cancellationSignals: [],
            logger: Logger(label: "portwatch.probe.test")))
        let running = Task { try await group.run() }
        var iterator = started.makeAsyncIterator()
        _ = await iterator.next()
        await group.triggerGracefulShutdown()
        try await running.value
        #expect(await pipeline.recorder.results.isEmpty, "the abandoned probe delivered nothing")
    }

    @Test func serviceReportsFailureAndRecoveryOnceEachAndRulesFire() async throws {
        let listener = try ReopenableListener()
        let probe = testProbe(listener.target, name: "db")
        let pipeline = await ProbePipeline(probes: [probe], rules: [
            RuleConfig(name: "db-down", metric: .probeSuccess, below: 1, keepFiringFor: .zero, probe: probe.target.text),
            RuleConfig(name: "db-slow", metric: .probeLatencyMs, above: 0),
        ])
        let recorder = pipeline.recorder
        let running = Task { try await pipeline.service.run() }
        defer { running.cancel() }

        // Healthy from the start: no event, but every connect takes more than 0 ms.
        #expect(await recorder.waitUntil { await $0.results.count >= 2 })
        #expect(await recorder.events.filter { $0.kind == .probeFailed }.isEmpty)
        let slow = try #require(await recorder.alerts.first { $0.rule == "db-slow" })
        #expect(slow.state == .firing && slow.target == probe.target.text && slow.metric == "probe_latency_ms")
        #expect(slow.value > 0 && slow.proto == nil && slow.port == nil)

        listener.close()
        #expect(await recorder.waitUntil { await $0.count(.probeFailed) == 1 })
        let failedAt = await recorder.results.count
        // Three more failed probes: still one event.
        #expect(await recorder.waitUntil { await $0.results.count >= failedAt + 3 })
        #expect(await recorder.count(.probeFailed) == 1)
        let failed = try #require(await recorder.events.first { $0.kind == .probeFailed })
        #expect(failed.details["target"] == probe.target.text && failed.details["name"] == "db")
        #expect(failed.message.contains("db (\(probe.target.text))") && failed.message.contains("closed (refused)"))
        #expect(failed.port == listener.port && failed.proto == .tcp)
        let down = try #require(await recorder.alerts.first { $0.rule == "db-down" })
        #expect(down.state == .firing && down.value == 0 && down.threshold == 1)
        let status = try #require(await pipeline.state.probes().first)
        #expect(status.latest?.healthy == false && status.config.name == "db")

        try listener.reopen()
        #expect(await recorder.waitUntil { await $0.count(.probeRecovered) == 1 })
        #expect(await recorder.waitUntil { await $0.alerts.contains { $0.rule == "db-down" && $0.state == .resolved } })
        #expect(await recorder.count(.probeFailed) == 1)
        let recovered = await pipeline.state.probes().first
        #expect(recovered?.latest?.healthy == true)
        #expect(recovered?.since ?? 0 >= failed.time)

        running.cancel()
        try await running.value
    }

    @Test func reloadReplacesTheTargets() async throws {
        let first = try ReopenableListener()
        let second = try ReopenableListener()
        let pipeline = await ProbePipeline(probes: [testProbe(first.target)])
        let recorder = pipeline.recorder
        let running = Task { try await pipeline.service.run() }
        defer { running.cancel() }
        #expect(await recorder.waitUntil { await $0.results.contains { $0.target == first.target } })

        pipeline.service.update([testProbe(second.target)])
        await pipeline.state.setProbes([testProbe(second.target)])
        #expect(await recorder.waitUntil { await $0.results.contains { $0.target == second.target } })
        let firstCount = await recorder.results.filter { $0.target == first.target }.count
        #expect(await recorder.waitUntil {
            await $0.results.filter { $0.target == second.target }.count >= 4
        })
        #expect(await recorder.results.filter { $0.target == first.target }.count == firstCount,
                "a removed target is no longer probed")
        #expect(await pipeline.state.probes().map(\.config.target) == [second.target])
        running.cancel()
        try await running.value
    }
}

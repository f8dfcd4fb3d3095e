import Foundation
import Hummingbird
import HummingbirdTesting
import PortwatchCore
import PortwatchProbe
@testable import PortwatchMonitor
import Testing
#if canImport(Glibc)
import Glibc
#endif

// `/api/v1/probes`, probe history in the SQLite store and over the API, and the probe series of
// `/metrics`, from real probes of real loopback listeners.

private let promtool = findTool("promtool")

private func tempDatabase() throws -> (dir: String, path: String) {
    let dir = NSTemporaryDirectory() + "pw-probes-\(getpid())-\(UUID().uuidString.prefix(8))"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return (dir, dir + "/history.sqlite")
}

private func app(_ state: MonitorState, metrics: PortMetrics = PortMetrics()) -> some ApplicationProtocol {
    buildApplication(source: state, options: HTTPOptions(listen: ListenAddress(host: "127.0.0.1", port: 0)),
                     metrics: metrics)
}

/// A result as the probe service records it, with its time moved (for history).
private func result(_ target: ProbeTarget, healthy: Bool, at time: Double, latency: Double = 1.5) -> ProbeResult {
    ProbeResult(target: target, address: "127.0.0.1", attempts: [], state: healthy ? .open : .closed, healthy: healthy,
                latency: healthy ? LatencySummary(min: latency, median: latency, p95: latency, p99: latency, max: latency, stddev: 0) : nil,
                loss: healthy ? 0 : 1, tls: nil, expect: nil, problems: healthy ? [] : ["closed (refused)"],
                time: Date(timeIntervalSince1970: time))
}

@Suite("Probe API, history and metrics")
struct ProbeAPITests {
    @Test func probesDocumentUsesTheProbeJSONEntry() async throws {
        let listener = try ReopenableListener()
        let probe = testProbe(listener.target, name: "db")
        let unprobed = testProbe(ProbeTarget(text: "127.0.0.1:1", host: "127.0.0.1", port: 1))
        let state = MonitorState(interval: .seconds(5), history: InMemoryHistory())
        await state.setProbes([probe, unprobed])
        await state.recordProbe(await NetworkProber().probe(probe.target, options: probe.options))

        try await app(state).test(.router) { client in
            try await client.execute(uri: "/api/v1/probes", method: .get) { response in
                #expect(response.status == .ok)
                let doc = try decodeJSONObject(String(buffer: response.body))
                let probes = try #require(doc["probes"] as? [[String: Any]])
                #expect(probes.count == 1, "a target not probed yet has no entry")
                let entry = try #require(probes.first)
                for key in ["target", "host", "port", "address", "state", "healthy", "latency_ms", "loss", "tls", "expect"] {
                    #expect(entry.keys.contains(key), "missing \(key)")
                }
                #expect(entry["target"] as? String == probe.target.text)
                #expect(entry["name"] as? String == "db")
                #expect(entry["host"] as? String == "127.0.0.1")
                #expect(entry["port"] as? Int == Int(listener.port))
                #expect(entry["address"] as? String == "127.0.0.1")
                #expect(entry["state"] as? String == "open")
                #expect(entry["healthy"] as? Bool == true)
                #expect(entry["tls"] is NSNull && entry["expect"] is NSNull)
                let latency = try #require(entry["latency_ms"] as? [String: Any])
                #expect(Set(latency.keys) == ["min", "median", "p95", "p99", "max", "stddev"])
                #expect((latency["median"] as? Double ?? 0) > 0)
                #expect(entry["last_change"] is String)
            }
        }
    }

    @Test func historyRoundTripsThroughTheStoreAndTheAPI() async throws {
        let (dir, path) = try tempDatabase()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var retention = Retention()
        retention.raw = .seconds(3600)
        let store = try HistoryStore(path: path, retention: retention)
        let target = ProbeTarget(text: "127.0.0.1:5432", host: "127.0.0.1", port: 5432)
        let now = Date().timeIntervalSince1970
        // Three hours ago: two healthy, one failed probe; then the last ten minutes, all healthy.
        let old = ((now - 3 * 3600) / 3600).rounded(.down) * 3600 + 60
        let written = [result(target, healthy: true, at: old, latency: 1), result(target, healthy: false, at: old + 30),
                       result(target, healthy: true, at: old + 60, latency: 3)]
            + (0..<10).map { result(target, healthy: true, at: now - 600 + Double($0) * 60, latency: 2) }
        try store.recordProbes(written)

        let recent = try store.probeHistory(target: target.text, since: now - 900, now: now)
        #expect(recent.stepSeconds == 0)
        #expect(recent.points.count == 10)
        #expect(recent.points.allSatisfy { $0.probes == 1 && $0.healthy == 1 && $0.latencyMedian == 2 && $0.state == "open" })
        #expect(abs((recent.points.first?.time ?? 0) - (now - 600)) < 0.002)

        // Maintenance rolls the old hour up and drops raw rows past raw retention.
        try store.maintain(now: now)
        let long = try store.probeHistory(target: target.text, since: now - 4 * 3600, now: now)
        #expect(long.stepSeconds == 3600)
        let hour = try #require(long.points.first)
        #expect(hour.time == old - 60 && hour.probes == 3)
        #expect(abs(hour.healthy - 2.0 / 3.0) < 1e-9)
        #expect(hour.latencyMin == 1 && hour.latencyMax == 3 && hour.latencyMedian == 2, "mean of the medians")
        #expect(abs(hour.loss - 1.0 / 3.0) < 1e-9)
        #expect(long.points.dropFirst().allSatisfy { $0.probes >= 1 })
        #expect(long.points.reduce(0) { $0 + $1.probes } == 13, "every probe counted once, raw or rolled up")

        // A probe rule's alert keeps its target in the alert log.
        try store.recordAlerts([Alert(rule: "db-down", state: .firing, severity: "critical", proto: nil, port: nil,
                                      metric: "probe_success", value: 0, threshold: 1, since: now - 30,
                                      message: "probe_success on db is 0", instance: "test", target: target.text)])
        let logged = try store.alerts(since: now - 60, limit: 10)
        #expect(logged.map(\.target) == [target.text] && logged.first?.port == nil)

        // The API reads the same store; the target is URL-encoded in the path.
        let state = MonitorState(interval: .seconds(5), history: StoredHistory(store: store))
        await state.setProbes([testProbe(target)])
        try await app(state).test(.router) { client in
            try await client.execute(uri: "/api/v1/probes/127.0.0.1%3A5432/history?since=15m", method: .get) { response in
                #expect(response.status == .ok)
                let doc = try decodeJSONObject(String(buffer: response.body))
                #expect(doc["target"] as? String == target.text)
                let points = try #require(doc["points"] as? [[String: Any]])
                #expect(points.count == 10)
                #expect(points.first?["healthy"] as? Bool == true)
                #expect((points.first?["latency_ms"] as? [String: Any])?["median"] as? Double == 2)
            }
            try await client.execute(uri: "/api/v1/probes/127.0.0.1%3A9/history", method: .get) { response in
                #expect(response.status == .notFound)
                let doc = try decodeJSONObject(String(buffer: response.body))
                #expect(doc["error"] as? String == "no probe of '127.0.0.1:9' is configured")
            }
            try await client.execute(uri: "/api/v1/probes/127.0.0.1%3A5432/history?since=soon", method: .get) { response in
                #expect(response.status == .badRequest)
            }
        }
    }

    @Test(.enabled(if: promtool != nil, "promtool is not installed (Debian: apt-get install prometheus)"))
    func probeMetricsPassPromtool() async throws {
        let listener = try ReopenableListener()
        let probe = testProbe(listener.target)
        let metrics = PortMetrics()
        let measured = await NetworkProber().probe(probe.target, options: probe.options)
        metrics.recordProbe(target: probe.target.text, success: measured.healthy, duration: measured.duration)
        metrics.recordProbe(target: "tls.example:443", success: false, duration: .milliseconds(40), tlsExpiry: 10 * 86_400)
        let state = MonitorState(interval: .seconds(5), history: InMemoryHistory())
        let text: String = try await app(state, metrics: metrics).test(.router) { client in
            try await client.execute(uri: "/metrics", method: .get) { String(buffer: $0.body) }
        }
        let (status, out, err) = try runTool(promtool!, ["check", "metrics"], stdin: text)
        #expect(status == 0 && out.isEmpty && !err.contains("problem"), "promtool: \(out) \(err)")
        let label = "target=\"\(probe.target.text)\""
        #expect(text.contains("portwatch_probe_success{\(label)} 1"))
        #expect(text.contains("portwatch_probe_success{target=\"tls.example:443\"} 0"))
        #expect(text.contains("portwatch_probe_duration_seconds_count{\(label)} 1"))
        #expect(text.contains("portwatch_probe_duration_seconds_bucket{\(label),le=\"+Inf\"} 1"))
        #expect(text.contains("portwatch_probe_tls_expiry_seconds{target=\"tls.example:443\"} 864000"))
        #expect(!text.contains("portwatch_probe_tls_expiry_seconds{\(label)}"), "no TLS, no expiry series")

        // A reload that drops a target drops its series.
        metrics.retainProbes([probe.target.text])
        let after = String(decoding: metrics.render(), as: UTF8.self)
        #expect(!after.contains("tls.example"))
        #expect(after.contains("portwatch_probe_success{\(label)} 1"))
    }
}

// `portwatch daemon` with `probes:` end to end: the real binary probes a loopback listener the
// test closes and opens again, and says so through its API, /metrics and the event log; a SIGHUP
// with another probe list replaces the targets.

import Foundation
import Testing
import PortwatchTestSupport
#if canImport(Glibc)
import Glibc
#endif

@Suite(.serialized, .blocking) struct DaemonProbeE2ETests {
    @Test func aProbedListenerThatGoesAwayAndComesBack() throws {
        let dir = try makeTemporaryDirectory("e2e-probe")
        defer { removeTree(dir) }
        let port = try Net.freePorts(1)[0]
        var listener: TestSocket? = try Net.tcpListener("127.0.0.1", port: port)
        defer { listener?.close() }
        let target = "127.0.0.1:\(port)"
        let config = dir + "/portwatch.yml"
        try """
            interval: 200ms
            probes:
              - {target: "\(target)", name: svc, interval: 1s, timeout: 1s}
            rules:
              - {name: svc-down, probe: svc, metric: probe_success, below: 1, keep_firing_for: 1s}
            """.write(toFile: config, atomically: true, encoding: .utf8)
        let daemon = try LiveDaemon(["--config", config], directory: dir)
        defer { daemon.stop() }

        func probe() -> [String: Any]? {
            daemon.get("/api/v1/probes")?.json?.objects("probes").first { $0.string("target") == target }
        }
        // Probes run every second (±10%), samples every 200 ms: a probe within ten samples.
        let first = daemon.within(samples: 15) { probe() }
        try #require(first != nil, "no probe result: \(daemon.log.text.suffix(2000))")
        #expect(first?.string("state") == "open" && first?.bool("healthy") == true, "\(first ?? [:])")
        #expect(first?.string("name") == "svc")
        #expect(first?.object("latency_ms")?["median"] is NSNumber)

        listener?.close()
        listener = nil
        let failed = daemon.within(samples: 30) { daemon.events("probe_failed", port: port).first }
        try #require(failed != nil, "no probe_failed: \(daemon.get("/api/v1/events?since=1h")?.body.suffix(2000) ?? "")")
        #expect(failed?.string("target") == target && failed?.string("name") == "svc")
        let down = daemon.within(samples: 15) { probe().flatMap { $0.bool("healthy") == false ? $0 : nil } }
        #expect(down?.string("state") == "closed")
        let firing = daemon.within(samples: 15) {
            daemon.get("/api/v1/alerts")?.json?.objects("alerts").first { $0.string("rule") == "svc-down" }
        }
        #expect(firing?.string("target") == target && firing?.string("state") == "firing", "\(firing ?? [:])")
        let metrics = daemon.get("/metrics")?.body ?? ""
        #expect(metrics.contains("portwatch_probe_success{target=\"\(target)\"} 0"), "\(metrics.suffix(1500))")
        #expect(metrics.contains("portwatch_probe_duration_seconds_count{target=\"\(target)\"}"))

        listener = try Net.tcpListener("127.0.0.1", port: port)
        let recovered = daemon.within(samples: 30) { daemon.events("probe_recovered", port: port).first }
        #expect(recovered != nil, "no probe_recovered: \(daemon.get("/api/v1/events?since=1h")?.body.suffix(2000) ?? "")")
        #expect(daemon.events("probe_failed", port: port).count == 1, "one failure, one event")

        let encoded = target.replacingOccurrences(of: ":", with: "%3A")
        let history = daemon.within(samples: 15) { () -> [[String: Any]]? in
            let points = daemon.get("/api/v1/probes/\(encoded)/history?since=10m")?.json?.objects("points") ?? []
            return points.contains { $0.bool("healthy") == false } && points.contains { $0.bool("healthy") == true } ? points : nil
        }
        #expect(history != nil, "history has both healthy and failed results")
        #expect(daemon.get("/api/v1/probes/127.0.0.1%3A9/history")?.status == 404)

        // SIGHUP with no probes: the target leaves the API and /metrics.
        try "interval: 200ms\n".write(toFile: config, atomically: true, encoding: .utf8)
        #expect(Glibc.kill(daemon.run.child.pid, SIGHUP) == 0)
        let emptied = daemon.within(samples: 20) { daemon.get("/api/v1/probes")?.json?.objects("probes").isEmpty == true ? true : nil }
        #expect(emptied == true)
        #expect(daemon.within(samples: 10) {
            (daemon.get("/metrics")?.body ?? "x").contains("portwatch_probe_success") ? nil : true
        } == true)
    }
}

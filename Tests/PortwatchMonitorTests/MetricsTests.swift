// `/metrics` over real samples of real loopback sockets: promtool accepts it, the contract names
// carry the right values, label sets stay bounded and counters only grow.

import Foundation
import Hummingbird
import HummingbirdTesting
import PortwatchCore
@testable import PortwatchMonitor
import Testing

private let promtool = findTool("promtool")

/// Series lines (`name{labels} value`) of one metric name.
private func series(_ text: String, _ name: String) -> [String] {
    text.split(separator: "\n").map(String.init).filter { $0.hasPrefix(name + "{") || $0.hasPrefix(name + " ") }
}

/// The value of the one series of `name` whose label text contains every fragment.
private func value(_ text: String, _ name: String, _ fragments: [String]) -> Double? {
    let lines = series(text, name).filter { line in fragments.allSatisfy { line.contains($0) } }
    guard lines.count == 1, let v = lines[0].split(separator: " ").last else { return nil }
    return Double(v)
}

/// Distinct `port="N"` label values among the series of `name`.
private func labelledPorts(_ text: String, _ name: String) -> Set<String> {
    Set(series(text, name).compactMap { line -> String? in
        guard let r = line.range(of: "port=\"") else { return nil }
        return String(line[r.upperBound...].prefix { $0 != "\"" })
    })
}

private func scrape(_ metrics: PortMetrics, _ source: FakeMonitorSource) async throws -> String {
    let router = buildRouter(source: source, options: HTTPOptions(listen: ListenAddress(host: "127.0.0.1", port: 0)),
                             metrics: metrics)
    let app = Application(router: router)
    return try await app.test(.router) { client in
        try await client.execute(uri: "/metrics", method: .get) { response in
            #expect(response.status == .ok)
            #expect(response.headers[.contentType]?.hasPrefix("text/plain; version=0.0.4") == true)
            return String(buffer: response.body)
        }
    }
}

@Suite("Prometheus metrics")
struct MetricsTests {
    @Test(.enabled(if: promtool != nil, "promtool is not installed (Debian: apt-get install prometheus)"))
    func metricsPassPromtoolLint() async throws {
        let busy = try BusyListener()
        defer { busy.close() }
        let quiet = try LoopbackSocket(.udp)
        let metrics = PortMetrics(maxPorts: 500)
        metrics.update(busy.latest, configuredPorts: [MonitoredPort(proto: .tcp, port: 1)])
        metrics.recordSampleDuration(.milliseconds(12))
        metrics.recordHistoryWriteError()
        metrics.recordAlertDropped(channel: "webhook")
        metrics.recordScanDetected()
        metrics.updateAlerts([alertFiring("busy")], rules: ["busy", "quiet"])
        metrics.recordProbe(target: "127.0.0.1:\(quiet.port)", success: true, duration: .milliseconds(3))
        let text = try await scrape(metrics, FakeMonitorSource(sample: busy.latest))
        let (status, out, err) = try runTool(promtool!, ["check", "metrics"], stdin: text)
        #expect(status == 0, "promtool: \(out) \(err)")
        #expect(out.isEmpty && !err.contains("problem"), "promtool lint: \(out) \(err)")
        for name in ["portwatch_port_listening", "portwatch_port_connections", "portwatch_port_received_bytes_total",
                     "portwatch_port_sent_bytes_total", "portwatch_port_received_packets_total",
                     "portwatch_port_sent_packets_total", "portwatch_port_retransmits_total", "portwatch_port_drops_total",
                     "portwatch_port_accept_queue", "portwatch_port_accept_queue_max", "portwatch_probe_success",
                     "portwatch_probe_duration_seconds_count", "portwatch_scan_detected_total", "portwatch_alerts_firing",
                     "portwatch_history_write_errors_total", "portwatch_alert_queue_dropped_total"] {
            #expect(!series(text, name).isEmpty, "no \(name)")
        }
        #expect(text.contains("portwatch_sample_duration_seconds_bucket"))
    }

    @Test func perPortSeriesCarryTheSampleValues() async throws {
        let busy = try BusyListener()
        defer { busy.close() }
        let port = "port=\"\(busy.listener.port)\""
        let configured = MonitoredPort(proto: .tcp, port: 1)
        let metrics = PortMetrics()
        metrics.update(busy.latest, configuredPorts: [configured])
        metrics.updateAlerts([alertFiring("busy"), alertFiring("busy")], rules: ["busy", "quiet"])
        let text = try await scrape(metrics, FakeMonitorSource(sample: busy.latest))
        #expect(value(text, "portwatch_port_listening", [port, "protocol=\"tcp\"", "address=\"127.0.0.1\""]) == 1)
        #expect(value(text, "portwatch_port_connections", [port, "state=\"established\""]) == 1)
        #expect(value(text, "portwatch_port_received_bytes_total", [port]) == 3000)
        #expect(value(text, "portwatch_port_sent_bytes_total", [port]) == 1000)
        #expect(value(text, "portwatch_port_accept_queue_max", [port]) == 16)
        // A configured port that nothing listens on: one series at 0, so `== 0` finds it.
        #expect(value(text, "portwatch_port_listening", ["port=\"1\"", "address=\"\""]) == 0)
        #expect(value(text, "portwatch_alerts_firing", ["rule=\"busy\""]) == 2)
        #expect(value(text, "portwatch_alerts_firing", ["rule=\"quiet\""]) == 0)
    }

    @Test func labelSetsStayWithinMaxPorts() async throws {
        let maxPorts = 4
        let listeners = try (0..<(maxPorts + 3)).map { _ in try LoopbackSocket() }
        let latest = try LoopbackSampler.once()
        let metrics = PortMetrics(maxPorts: maxPorts)
        metrics.update(latest, configuredPorts: [])
        let text = try await scrape(metrics, FakeMonitorSource(sample: latest))
        for name in ["portwatch_port_listening", "portwatch_port_connections", "portwatch_port_received_bytes_total"] {
            let ports = labelledPorts(text, name)
            #expect(ports.count == maxPorts, "\(name) has \(ports.count) port label values")
        }
        #expect(metrics.labelledPortSet.count == maxPorts)
        let omitted = try #require(value(text, "portwatch_metrics_ports_omitted", []))
        #expect(omitted >= Double(listeners.count - maxPorts))
    }

    @Test func ephemeralPortsNeverGetALabel() async throws {
        let busy = try BusyListener()
        defer { busy.close() }
        // The client end of a connection, and an unconnected UDP socket on an ephemeral port
        // (what a resolver holds): neither is a service.
        let clientPort = boundPort(busy.client)
        let udpClient = try LoopbackSocket(.udp)
        let latest = try LoopbackSampler.once()
        let ephemeral = latest.snapshot.classifier.ephemeral.range
        try #require(ephemeral.contains(udpClient.port), "the kernel gave a UDP port outside the ephemeral range")
        let metrics = PortMetrics()
        metrics.update(latest, configuredPorts: [])
        let text = try await scrape(metrics, FakeMonitorSource(sample: latest))
        let ports = labelledPorts(text, "portwatch_port_listening").union(labelledPorts(text, "portwatch_port_connections"))
        #expect(ports.contains(String(busy.listener.port)))
        #expect(!ports.contains(String(clientPort)))
        #expect(!metrics.labelledPortSet.contains(MonitoredPort(proto: .tcp, port: clientPort)))
        #expect(!metrics.labelledPortSet.contains(MonitoredPort(proto: .udp, port: udpClient.port)))
        // Configured, it is wanted after all.
        var later = latest
        later.snapshot.takenAt += 1
        metrics.update(later, configuredPorts: [MonitoredPort(proto: .udp, port: udpClient.port)])
        #expect(metrics.labelledPortSet.contains(MonitoredPort(proto: .udp, port: udpClient.port)))
    }

    @Test func countersAccumulateWindowsOnceAndPortsThatStopQualifyingLoseTheirSeries() async throws {
        let busy = try BusyListener()
        defer { busy.close() }
        let port = "port=\"\(busy.listener.port)\""
        let metrics = PortMetrics()
        var sampler = LoopbackSampler()
        let first = try sampler.start()
        metrics.update(first, configuredPorts: [])
        try exchangeBytes(2000, from: busy.client, to: busy.server)
        let second = try sampler.next()
        metrics.update(second, configuredPorts: [])
        // The same sample again (daemon and scrape both apply it): counted once.
        metrics.update(second, configuredPorts: [])
        metrics.refresh(from: second)
        try exchangeBytes(500, from: busy.client, to: busy.server)
        let third = try sampler.next()
        let source = FakeMonitorSource(sample: third)
        // A scrape applies a sample the daemon has not.
        let text = try await scrape(metrics, source)
        #expect(value(text, "portwatch_port_received_bytes_total", [port]) == 2500)

        // A configured port that nothing listens on loses its series once it is no longer configured.
        let gone = MonitoredPort(proto: .tcp, port: 1)
        var fourth = third
        fourth.snapshot.takenAt += 1
        fourth.report = nil
        metrics.update(fourth, configuredPorts: [gone])
        #expect(metrics.labelledPortSet.contains(gone))
        var fifth = fourth
        fifth.snapshot.takenAt += 1
        metrics.update(fifth, configuredPorts: [])
        #expect(!metrics.labelledPortSet.contains(gone))
        let after = String(decoding: metrics.render(), as: UTF8.self)
        #expect(series(after, "portwatch_port_listening").allSatisfy { !$0.contains("port=\"1\"") })
        #expect(value(after, "portwatch_port_received_bytes_total", [port]) == 2500)
    }
}

private func alertFiring(_ rule: String) -> Alert {
    Alert(rule: rule, state: .firing, severity: "warning", proto: .tcp, port: 1, metric: "connections", value: 1,
          threshold: 0, since: 0, message: "", instance: "test")
}

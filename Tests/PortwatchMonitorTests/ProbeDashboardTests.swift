// The dashboard's probes panel in headless Chromium: it shows each probe and follows a
// probe_failed event on the stream to the new state.

import Foundation
import Hummingbird
import HummingbirdTesting
import PortwatchCore
import PortwatchProbe
@testable import PortwatchMonitor
import Synchronization
import Testing

private enum ProbeBrowser {
    static let python = findTool("python3")
    static let missing: String? = {
        if findTool("chromium") == nil && findTool("chromium-browser") == nil { return "chromium is not installed (Debian: apt-get install chromium)" }
        if findTool("chromedriver", extra: ["/usr/lib/chromium/chromedriver"]) == nil { return "chromedriver is not installed (Debian: apt-get install chromium-driver)" }
        guard let python else { return "python3 is not installed" }
        if (try? runTool(python, ["-c", "import selenium"], timeout: 30).0) != 0 { return "selenium is not installed (pip install selenium)" }
        return nil
    }()
    static let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Dashboard/check_probes.py").path
}

/// A source whose one probe is healthy at the first `/api/v1/probes` and failed afterwards; its
/// stream carries the `probe_failed` event that tells the page to look again.
private final class FlippingProbeSource: MonitorDataSource {
    let inner: FakeMonitorSource
    let healthy: ProbeStatus
    let failed: ProbeStatus
    let event: MonitorEvent
    let calls = Mutex(0)

    init(inner: FakeMonitorSource, healthy: ProbeStatus, failed: ProbeStatus, event: MonitorEvent) {
        self.inner = inner
        self.healthy = healthy
        self.failed = failed
        self.event = event
    }

    var interval: Duration { inner.interval }
    func latest() async -> LatestSample? { await inner.latest() }
    func history(_ port: MonitoredPort, since: Double, step: Double?) async throws -> HistorySeries {
        try await inner.history(port, since: since, step: step)
    }
    func events(since: Double, port: UInt16?, limit: Int) async throws -> [MonitorEvent] { [] }
    func alerts() async -> [Alert] { [] }
    func probes() async -> [ProbeStatus] {
        calls.withLock { n in
            n += 1
            return n == 1 ? [healthy] : [failed]
        }
    }
    func probeHistory(_ target: String, since: Double) async throws -> ProbeHistory? { nil }
    func subscribe() async -> AsyncStream<StreamMessage> {
        let (stream, feed) = AsyncStream<StreamMessage>.makeStream()
        feed.yield(.event(event))
        return stream
    }
}

@Suite("Dashboard probes")
struct ProbeDashboardTests {
    @Test(.enabled(if: ProbeBrowser.missing == nil, "\(ProbeBrowser.missing ?? "")"), .timeLimit(.minutes(2)))
    func probesPanelFollowsAProbeFailure() async throws {
        let listener = try ReopenableListener()
        let probe = testProbe(listener.target, name: "db")
        let up = await NetworkProber().probe(probe.target, options: probe.options)
        listener.close()
        let down = await NetworkProber().probe(probe.target, options: probe.options)
        let event = MonitorEvent(time: down.time.timeIntervalSince1970, kind: .probeFailed, proto: .tcp, port: listener.port,
                                 message: "probe of db failed", details: ["target": probe.target.text])
        let busy = try BusyListener()
        defer { busy.close() }
        let source = FlippingProbeSource(
            inner: FakeMonitorSource(sample: busy.latest, endStreams: false),
            healthy: ProbeStatus(config: probe, latest: up, since: up.time.timeIntervalSince1970),
            failed: ProbeStatus(config: probe, latest: down, since: down.time.timeIntervalSince1970), event: event)
        let app = buildApplication(source: source, options: HTTPOptions(listen: ListenAddress(host: "127.0.0.1", port: 0)),
                                   metrics: PortMetrics())
        let rowID = "probe-127_0_0_1_\(listener.port)"
        let (status, out, err) = try await app.test(.live) { client in
            let serverPort = try #require(client.port)
            // The browser run blocks for seconds: on a thread of its own, not one of the few the
            // cooperative pool (the server's handlers, the other tests) runs on.
            return try await withCheckedThrowingContinuation { continuation in
                Thread {
                    continuation.resume(with: Result {
                        try runTool(ProbeBrowser.python!, [ProbeBrowser.script, "http://localhost:\(serverPort)/", rowID, "closed"],
                                    timeout: 90)
                    })
                }.start()
            }
        }
        try #require(status == 0, "probe panel check: \(err)")
        let row = try decodeJSONObject(out)
        let cells = try #require(row["cells"] as? [String])
        #expect(row["visible"] as? Bool == true)
        #expect(cells.first == "db (\(probe.target.text))")
        #expect(cells.dropFirst().first?.hasPrefix("closed") == true)
        #expect(cells.last == "closed (refused)")
        #expect(source.calls.withLock { $0 } >= 2, "the page asked again after the event")
    }
}

// The dashboard in a real browser: headless Chromium (Debian's chromium + chromium-driver) driven
// by selenium from Tests/Dashboard/check_dashboard.py, against the app served live on loopback.

import Foundation
import Hummingbird
import HummingbirdTesting
import PortwatchCore
@testable import PortwatchMonitor
import Testing

private enum Browser {
    static let chromium = findTool("chromium") ?? findTool("chromium-browser")
    static let chromedriver = findTool("chromedriver", extra: ["/usr/lib/chromium/chromedriver"])
    static let python = findTool("python3")
    static let selenium: Bool = {
        guard let python else { return false }
        return (try? runTool(python, ["-c", "import selenium"], timeout: 30).0) == 0
    }()
    static var missing: String? {
        if chromium == nil { return "chromium is not installed (Debian: apt-get install chromium)" }
        if chromedriver == nil { return "chromedriver is not installed (Debian: apt-get install chromium-driver)" }
        if python == nil { return "python3 is not installed" }
        if !selenium { return "selenium is not installed (pip install selenium)" }
        return nil
    }
    static let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Dashboard/check_dashboard.py").path
    static let netnsScript = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Dashboard/check_dashboard_netns.py").path
}

@Suite("Dashboard")
struct DashboardTests {
    @Test(.enabled(if: Browser.missing == nil, "\(Browser.missing ?? "")"), .timeLimit(.minutes(2)))
    func dashboardShowsThePortRowChartsAndEventsInChromium() async throws {
        let busy = try BusyListener()
        defer { busy.close() }
        let now = busy.latest.snapshot.takenAt
        let port = busy.listener.port
        let source = FakeMonitorSource(
            sample: busy.latest,
            events: [MonitorEvent(time: now - 5, kind: .listenerStarted, proto: .tcp, port: port, message: "listening on 127.0.0.1")],
            alerts: [Alert(rule: "busy-port", state: .firing, severity: "warning", proto: .tcp, port: port, metric: "connections",
                           value: 1, threshold: 0, since: now - 60, message: "1 connection", instance: "test")],
            endStreams: false)
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("portwatch-dashboard-\(getpid())-\(port)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let screenshot = directory.appendingPathComponent("dashboard.png").path
        let app = buildApplication(source: source, options: HTTPOptions(listen: ListenAddress(host: "127.0.0.1", port: 0)),
                                   metrics: PortMetrics())
        let (status, out, err) = try await app.test(.live) { client in
            let serverPort = try #require(client.port)
            // The browser run blocks a thread: keep it off the cooperative pool the server's handlers use.
            return try await withCheckedThrowingContinuation { continuation in
                DispatchQueue.global().async {
                    continuation.resume(with: Result {
                        try runTool(Browser.python!, [Browser.script, "http://localhost:\(serverPort)/", String(port), screenshot],
                                    timeout: 90)
                    })
                }
            }
        }
        try #require(status == 0, "dashboard check: \(err)")
        let report = try decodeJSONObject(out)
        let row = try #require(report["row"] as? [String])
        #expect(row.first == "tcp")
        #expect(row.dropFirst().first == String(port))
        #expect(row.contains("busy"), "state cell: \(row)")
        #expect((report["charts"] as? Int ?? 0) >= 3)
        #expect(report["status"] as? String == "live")
        #expect((report["events"] as? Int ?? 0) >= 1)
        #expect((report["alerts"] as? [String])?.first?.contains("busy-port") == true)
        #expect(FileManager.default.fileExists(atPath: screenshot))
        print("dashboard screenshot: \(screenshot)")
    }

    /// A row of another network namespace on the same port number as ours is its own row, and
    /// its chart asks the history API for that namespace.
    @Test(.enabled(if: Browser.missing == nil, "\(Browser.missing ?? "")"), .timeLimit(.minutes(2)))
    func aRowOfAnotherNamespaceIsApartAndItsChartAsksForItsHistory() async throws {
        let busy = try BusyListener()
        defer { busy.close() }
        let port = busy.listener.port
        var latest = busy.latest
        var theirs = try #require(latest.samples.first { $0.key == busy.key })
        theirs.namespace = "web"
        theirs.owners = ["python3[4242]"]
        latest.samples.append(theirs)
        let source = FakeMonitorSource(sample: latest, endStreams: false)
        let app = buildApplication(source: source, options: HTTPOptions(listen: ListenAddress(host: "127.0.0.1", port: 0)),
                                   metrics: PortMetrics())
        let (status, out, err) = try await app.test(.live) { client in
            let serverPort = try #require(client.port)
            return try await withCheckedThrowingContinuation { continuation in
                DispatchQueue.global().async {
                    continuation.resume(with: Result {
                        try runTool(Browser.python!, [Browser.netnsScript, "http://localhost:\(serverPort)/", String(port), "web"],
                                    timeout: 90)
                    })
                }
            }
        }
        try #require(status == 0, "dashboard check: \(err)")
        let report = try decodeJSONObject(out)
        let host = try #require(report["host"] as? [String])
        let web = try #require(report["netns"] as? [String])
        #expect(host.first == "tcp")
        #expect(web.first == "web tcp")
        #expect(web.dropFirst().first == String(port))
        #expect(web.last == "python3[4242]")
        #expect(host.last?.contains("python3[4242]") == false)
        #expect(report["title"] as? String == "web tcp/\(port)")
        let asked = source.historyCalls.withLock { $0.map(\.0) }
        #expect(asked.contains(MonitoredPort(proto: .tcp, port: port, namespace: "web")), "history asked for \(asked)")
    }
}

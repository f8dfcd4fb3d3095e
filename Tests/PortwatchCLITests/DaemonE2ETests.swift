// `portwatch daemon` end to end: the real binary on loopback, read through its HTTP API, with real
// peers (a webhook receiver of the test's own, Prometheus, promtool, headless Chromium, sqlite3).

import Foundation
import Testing
import PortwatchTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// A daemon the test started, with its HTTP port, database and log.
final class LiveDaemon: @unchecked Sendable {
    let run: PortwatchRun
    let log: StderrLines
    let http: UInt16
    let directory: String
    let database: String
    /// The network namespace (`/run/netns/NAME`) the daemon runs in; nil: the test's own.
    let netns: String?
    var token: String?

    /// Starts `portwatch daemon` on a free loopback port (unless `listen` is given) and a
    /// database under `directory`, and waits for its readiness line. With `netns` it runs inside
    /// that namespace (`ip netns exec`), and `get` reaches it over that namespace's loopback.
    init(_ arguments: [String], directory: String, listen: String? = nil, http: UInt16? = nil, waitReady: Bool = true,
         netns: String? = nil) throws {
        let port = try http ?? Net.freePorts(1)[0]
        self.http = port
        self.directory = directory
        self.database = directory + "/history.sqlite"
        self.netns = netns
        run = try startPortwatch(["daemon", "--listen", listen ?? "127.0.0.1:\(port)", "--db", database] + arguments,
                                 environment: ["PORTWATCH_LOG_LEVEL": "debug"], netns: netns)
        log = StderrLines(run.child)
        if waitReady {
            let ready = log.waitFor(timeout: 90) { $0.hasPrefix("portwatch: daemon ready: ") }
            guard ready != nil else {
                run.child.kill()
                throw SupportError("no readiness line: \(log.text.suffix(3000))")
            }
        }
    }

    func get(_ path: String, token: String? = nil) -> LoopbackHTTP.Response? {
        _ = log.drain()
        var headers: [String: String] = [:]
        if let token = token ?? self.token { headers["Authorization"] = "Bearer \(token)" }
        return LoopbackHTTP.request(port: http, path, headers: headers, netns: netns)
    }

    /// Waits (reading the log meanwhile) until `body` returns a value; the wait is counted in
    /// samples of the daemon, at most `samples` of them.
    func within<T>(samples: Int, _ body: () -> T?) -> T? {
        var from = log.drain()
        for _ in 0..<samples {
            if let value = body() { return value }
            guard let i = log.waitFor(from: from, timeout: 30, DaemonCLITests.isSampleLine) else { return body() }
            from = i + 1
        }
        return body()
    }

    /// Events of kind `kind` on `port` that `/api/v1/events` lists now.
    func events(_ kind: String, port: UInt16) -> [[String: Any]] {
        (get("/api/v1/events?since=1h&port=\(port)")?.json?.objects("events") ?? [])
            .filter { $0.string("kind") == kind && $0.int("port") == Int(port) }
    }

    func stop() {
        if !run.child.reap() {
            _ = Glibc.kill(run.child.pid, SIGTERM)
            if run.child.wait(timeout: 30) == nil { run.child.kill() }
        }
    }
}

@Suite(.serialized, .blocking) struct DaemonE2ETests {
    @Test func aListenerThatAppearsAndStopsIsAnEventAndARow() throws {
        let dir = try makeTemporaryDirectory("e2e-listen")
        defer { removeTree(dir) }
        let daemon = try LiveDaemon(["--interval", "200ms"], directory: dir)
        defer { daemon.stop() }

        let port = try Net.freePorts(1)[0]
        let listener = try Net.tcpListener("127.0.0.1", port: port)
        // The row is in the live state by the second sample after listen().
        let row = daemon.within(samples: 2) {
            daemon.get("/api/v1/ports")?.json?.objects("ports").first { $0.int("port") == Int(port) && $0.string("protocol") == "tcp" }
        }
        try #require(row != nil, "no row for tcp/\(port): \(daemon.log.text.suffix(2000))")
        #expect(row?.bool("listening") == true)
        #expect(row?.strings("addresses")?.contains("127.0.0.1") == true, "\(row ?? [:])")
        #expect(daemon.get("/api/v1/ports/tcp/\(port)")?.status == 200)
        // Events reach the API through the history writer's queue: a few samples at most.
        let started = daemon.within(samples: 10) { daemon.events("listener_started", port: port).first }
        #expect(started != nil, "\(daemon.get("/api/v1/events?since=1h")?.body.suffix(2000) ?? "no answer")")

        listener.close()
        let stopped = daemon.within(samples: 10) { daemon.events("listener_stopped", port: port).first }
        #expect(stopped != nil, "\(daemon.get("/api/v1/events?since=1h")?.body.suffix(2000) ?? "no answer")")
        let gone = daemon.within(samples: 3) {
            (daemon.get("/api/v1/ports")?.json?.objects("ports") ?? []).contains { $0.int("port") == Int(port) } ? nil : true
        }
        #expect(gone == true)
    }

    @Test func aThresholdRuleFiresAndResolvesAtAWebhook() throws {
        let dir = try makeTemporaryDirectory("e2e-rule")
        defer { removeTree(dir) }
        let receiver = try WebhookReceiver()
        defer { receiver.stop() }
        let port = try Net.freePorts(1)[0]
        let listener = try Net.tcpListener("127.0.0.1", port: port)
        defer { listener.close() }
        let config = dir + "/portwatch.yml"
        try """
            interval: 200ms
            instance: e2e-host
            rules:
              - {name: crowded, ports: "\(port)", metric: connections.established, above: 2, for: 400ms, severity: critical}
            channels:
              - {type: log}
              - {type: webhook, url: "http://127.0.0.1:\(receiver.port)/hook", timeout: 5s}
            """.write(toFile: config, atomically: true, encoding: .utf8)
        let daemon = try LiveDaemon(["--config", config], directory: dir)
        defer { daemon.stop() }

        // Three clients: the port's row counts the 3 accepted (server-side) connections.
        var held: [TestSocket] = []
        for _ in 0..<3 {
            held.append(try Net.connect("127.0.0.1", port: port))
            held.append(try Net.accept(listener))
        }
        let firing = daemon.within(samples: 30) { receiver.received.first { $0.string("state") == "firing" } }
        try #require(firing != nil, "no firing alert at the webhook: \(daemon.log.text.suffix(3000))")
        let alert = firing!
        for key in ["rule", "state", "severity", "protocol", "port", "metric", "value", "threshold", "since", "message", "instance"] {
            #expect(alert.keys.contains(key), "alert JSON lacks \(key): \(alert)")
        }
        #expect(alert.string("rule") == "crowded")
        #expect(alert.string("severity") == "critical")
        #expect(alert.string("protocol") == "tcp")
        #expect(alert.int("port") == Int(port))
        #expect(alert.string("metric") == "connections.established")
        #expect((alert["value"] as? NSNumber)?.doubleValue == 3, "\(alert)")
        #expect((alert["threshold"] as? NSNumber)?.doubleValue == 2)
        #expect(alert.string("instance") == "e2e-host")
        let listed = daemon.get("/api/v1/alerts")?.json?.objects("alerts") ?? []
        #expect(listed.contains { $0.string("rule") == "crowded" && $0.string("state") == "firing" }, "\(listed)")
        let metrics = daemon.get("/metrics")?.body ?? ""
        #expect(metrics.contains("portwatch_alerts_firing{rule=\"crowded\"} 1"),
                "\(metrics.split(separator: "\n").filter { $0.contains("alerts_firing") })")

        for s in held { s.close() }
        let resolved = daemon.within(samples: 40) { receiver.received.first { $0.string("state") == "resolved" } }
        #expect(resolved?.string("rule") == "crowded", "\(receiver.received)")
        #expect(resolved?.int("port") == Int(port))
        let firingEvent = daemon.within(samples: 10) { daemon.events("alert_firing", port: port).first }
        #expect(firingEvent != nil)
    }

    @Test func aPortExpectedToListenThatIsClosedIsAnExpectationFailure() throws {
        let dir = try makeTemporaryDirectory("e2e-expect")
        defer { removeTree(dir) }
        let port = try Net.freePorts(1)[0]
        let config = dir + "/portwatch.yml"
        try "interval: 200ms\nports:\n  - {port: \(port), name: must-listen, expect: listening}\n"
            .write(toFile: config, atomically: true, encoding: .utf8)
        let daemon = try LiveDaemon(["--config", config], directory: dir)
        defer { daemon.stop() }
        let failed = daemon.within(samples: 10) { daemon.events("expectation_failed", port: port).first }
        try #require(failed != nil, "\(daemon.get("/api/v1/events?since=1h")?.body.suffix(2000) ?? "no answer")")
        // Met once something listens.
        let listener = try Net.tcpListener("127.0.0.1", port: port)
        defer { listener.close() }
        let met = daemon.within(samples: 10) { daemon.events("expectation_met", port: port).first }
        #expect(met != nil)
    }

    @Test func beyondLoopbackTheAPINeedsTheTokenButHealthzDoesNot() throws {
        let dir = try makeTemporaryDirectory("e2e-token")
        defer { removeTree(dir) }
        let token = "e2e-\(getpid())-\(UInt32.random(in: 1...UInt32.max))"
        try "\(token)\n".write(toFile: dir + "/token", atomically: true, encoding: .utf8)
        let port = try Net.freePorts(1)[0]
        let daemon = try LiveDaemon(["--interval", "200ms", "--token-file", dir + "/token"], directory: dir,
                                    listen: "0.0.0.0:\(port)", http: port)
        defer { daemon.stop() }
        try #require(daemon.log.lines.contains { $0.contains("http://0.0.0.0:\(port)") }, "\(daemon.log.text)")
        #expect(daemon.get("/api/v1/ports")?.status == 401)
        #expect(daemon.get("/api/v1/ports", token: "wrong")?.status == 401)
        #expect(daemon.get("/metrics")?.status == 401)
        #expect(daemon.get("/api/v1/ports", token: token)?.status == 200)
        // Answered without the token: 200, or 503 "stale" when a loaded machine delayed the
        // 200 ms samples past three intervals (freshness has its own tests); never 401.
        let health = daemon.get("/healthz")
        #expect(health?.status == 200 || health?.status == 503, "\(String(describing: health?.status))")
        #expect(!daemon.log.text.contains(token), "the token was logged")
    }

    @Test func killedWithSIGKILLWhileWritingTheDatabaseStaysIntactAndReopens() throws {
        let dir = try makeTemporaryDirectory("e2e-kill9")
        defer { removeTree(dir) }
        let http = try Net.freePorts(1)[0]
        for round in 1...5 {
            let daemon = try LiveDaemon(["--interval", "50ms"], directory: dir, http: http)
            // Let it write a few samples, then kill it in the middle of whatever it is doing.
            var from = daemon.log.drain()
            for _ in 0..<(3 + round) {
                guard let i = daemon.log.waitFor(from: from, timeout: 30, DaemonCLITests.isSampleLine) else { break }
                from = i + 1
            }
            #expect(Glibc.kill(daemon.run.child.pid, SIGKILL) == 0)
            _ = daemon.run.child.wait(timeout: 30)
            let check = integrityCheck(daemon.database)
            #expect(check == "ok", "round \(round): \(check)")
        }
        // And the history is readable by the CLI afterwards.
        let events = runPortwatch(["events", "--since", "1h", "--db", dir + "/history.sqlite", "--json"], timeout: 30)
        #expect(events.status == 0 || events.status == 1, "\(events)")
    }

    /// `PRAGMA integrity_check` through sqlite3 (Debian's `sqlite3`), else Python's sqlite3 module.
    private func integrityCheck(_ path: String) -> String {
        if let sqlite3 = TestEnv.which("sqlite3") {
            let r = runTool(sqlite3, [path, "PRAGMA integrity_check;"], timeout: 30)
            return r.status == 0 ? r.stdout.trimmingCharacters(in: .whitespacesAndNewlines) : "sqlite3 failed: \(r.stderr)"
        }
        guard let python = TestEnv.python3 else { return "neither sqlite3 nor python3 to check with" }
        let r = runTool(python, ["-c", "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('PRAGMA integrity_check').fetchone()[0])", path],
                        timeout: 30)
        return r.status == 0 ? r.stdout.trimmingCharacters(in: .whitespacesAndNewlines) : "python sqlite3 failed: \(r.stderr)"
    }

    @Test(.enabled(if: TestEnv.which("promtool") != nil, "needs promtool (Debian: prometheus)"))
    func liveMetricsPassPromtool() throws {
        let dir = try makeTemporaryDirectory("e2e-promtool")
        defer { removeTree(dir) }
        let port = try Net.freePorts(1)[0]
        let listener = try Net.tcpListener("127.0.0.1", port: port)
        defer { listener.close() }
        let daemon = try LiveDaemon(["--interval", "200ms"], directory: dir)
        defer { daemon.stop() }
        let metrics = daemon.within(samples: 5) { () -> String? in
            guard let body = daemon.get("/metrics")?.body, body.contains("port=\"\(port)\"") else { return nil }
            return body
        }
        try #require(metrics != nil, "no series of port \(port) in /metrics")
        for name in ["portwatch_sample_duration_seconds", "portwatch_history_write_errors_total",
                     "portwatch_alert_queue_dropped_total", "portwatch_port_connections"] {
            #expect(metrics!.contains(name), "\(name) missing from /metrics")
        }
        try metrics!.write(toFile: dir + "/metrics.txt", atomically: true, encoding: .utf8)
        let r = runTool("/bin/sh", ["-c", "\"$0\" check metrics < \"$1\"", TestEnv.which("promtool")!, dir + "/metrics.txt"], timeout: 30)
        #expect(r.status == 0, "promtool: \(r.stdout) \(r.stderr)")
    }

    @Test(.enabled(if: TestEnv.which("prometheus") != nil, "needs prometheus (Debian: prometheus)"))
    func prometheusScrapesTheTrueEstablishedCount() throws {
        let dir = try makeTemporaryDirectory("e2e-prometheus")
        defer { removeTree(dir) }
        let port = try Net.freePorts(1)[0]
        let listener = try Net.tcpListener("127.0.0.1", port: port)
        defer { listener.close() }
        // N clients held: the port's row counts their N accepted, server-side connections.
        let clients = 4
        var held: [TestSocket] = []
        for _ in 0..<clients {
            held.append(try Net.connect("127.0.0.1", port: port))
            held.append(try Net.accept(listener))
        }
        defer { for s in held { s.close() } }
        let daemon = try LiveDaemon(["--interval", "500ms"], directory: dir)
        defer { daemon.stop() }

        let promPort = try Net.freePorts(1)[0]
        try """
            global: {scrape_interval: 1s, evaluation_interval: 1s}
            scrape_configs:
              - job_name: portwatch
                static_configs: [{targets: ["127.0.0.1:\(daemon.http)"]}]
            """.write(toFile: dir + "/prometheus.yml", atomically: true, encoding: .utf8)
        let prometheus = try Child.spawn(TestEnv.which("prometheus")!, [
            "--config.file=\(dir)/prometheus.yml", "--storage.tsdb.path=\(dir)/tsdb",
            "--web.listen-address=127.0.0.1:\(promPort)", "--log.level=warn",
        ])
        defer { prometheus.kill() }
        let ready = daemon.within(samples: 120) {
            LoopbackHTTP.request(port: promPort, "/-/ready", timeout: 2)?.status == 200 ? true : nil
        }
        try #require(ready == true, "prometheus never became ready: \(prometheus.drainStderr().suffix(2000))")
        let query = "portwatch_port_connections%7Bport%3D%22\(port)%22%2Cstate%3D%22established%22%7D"
        let value = daemon.within(samples: 60) { () -> Double? in
            let result = LoopbackHTTP.request(port: promPort, "/api/v1/query?query=\(query)", timeout: 5)?.json?
                .object("data")?.objects("result").first
            guard let pair = result?["value"] as? [Any], let text = pair.last as? String else { return nil }
            return Double(text)
        }
        #expect(value == Double(clients), "PromQL answer for tcp/\(port)")
    }

    @Test(.enabled(if: DashboardBrowser.missing == nil, "\(DashboardBrowser.missing ?? "")"))
    func theLiveDashboardShowsTheTestPortInChromium() throws {
        let dir = try makeTemporaryDirectory("e2e-dashboard")
        defer { removeTree(dir) }
        let daemon = try LiveDaemon(["--interval", "500ms"], directory: dir)
        defer { daemon.stop() }
        let port = try Net.freePorts(1)[0]
        let listener = try Net.tcpListener("127.0.0.1", port: port)
        defer { listener.close() }
        // Listening and known to the API (and its listener_started event stored) before the page loads.
        _ = daemon.within(samples: 10) { daemon.events("listener_started", port: port).first }
        let screenshot = dir + "/dashboard.png"
        let r = runTool(DashboardBrowser.python!, [DashboardBrowser.script, "http://127.0.0.1:\(daemon.http)/", String(port), screenshot],
                        timeout: 120)
        try #require(r.status == 0, "dashboard check: \(r.stderr.prefix(1500))")
        let report = (try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8))) as? [String: Any] ?? [:]
        let row = report["row"] as? [String] ?? []
        #expect(row.first == "tcp", "\(report)")
        #expect(row.dropFirst().first == String(port), "\(report)")
        #expect((report["charts"] as? Int ?? 0) >= 1)
        #expect(FileManager.default.fileExists(atPath: screenshot))
    }
}

/// Headless Chromium driven by selenium (Tests/Dashboard/check_dashboard.py).
enum DashboardBrowser {
    /// The first python3 that has selenium: Debian's, else the one on PATH (pip may have put
    /// selenium in a version manager's interpreter).
    static let python: String? = [TestEnv.python3, TestEnv.which("python3")].compactMap { $0 }.first { candidate in
        runTool(candidate, ["-c", "import selenium"], timeout: 30).status == 0
    }
    static let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Dashboard/check_dashboard.py").path
    static var missing: String? {
        if TestEnv.which("chromium") == nil { return "chromium is not installed (Debian: apt-get install chromium)" }
        if TestEnv.which("chromedriver") == nil && access("/usr/lib/chromium/chromedriver", X_OK) != 0 {
            return "chromedriver is not installed (Debian: apt-get install chromium-driver)"
        }
        if python == nil { return "no python3 with selenium (Debian: apt-get install python3-selenium, or pip install selenium)" }
        return nil
    }
}

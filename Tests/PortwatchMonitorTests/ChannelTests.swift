import AsyncHTTPClient
import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import ServiceLifecycle
import Testing
@testable import PortwatchMonitor
import PortwatchCore

// MARK: - Helpers

private func sampleAlert(_ rule: String = "web-crowded", state: AlertState = .firing, port: UInt16 = 443,
                         since: Double = 1_795_555_234.5) -> Alert {
    Alert(rule: rule, state: state, severity: "warning", proto: .tcp, port: port, metric: "connections.established",
          value: 6012, threshold: 5000, since: since, message: "connections.established on tcp/443 is 6012, above 5000",
          instance: "test-host")
}

private func parseObject(_ text: String) throws -> [String: Any] {
    try #require(JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
}

/// What a loopback receiver got, in order; `next` waits (bounded) for the following body.
private actor Inbox {
    private var bodies: [String] = []
    private var waiters: [(Int, CheckedContinuation<String?, Never>)] = []
    private var failFirst: Int

    init(failFirst: Int = 0) { self.failFirst = failFirst }

    /// Records a body and says which status to answer (500 for the first `failFirst`).
    func receive(_ body: String) -> HTTPResponse.Status {
        bodies.append(body)
        let index = bodies.count - 1
        for (i, waiter) in waiters where i == index { waiter.resume(returning: body) }
        waiters.removeAll { $0.0 == index }
        if failFirst > 0 {
            failFirst -= 1
            return .internalServerError
        }
        return .ok
    }

    var count: Int { bodies.count }

    /// The body number `index` (0-based), waiting up to `timeout` for it.
    func body(_ index: Int, timeout: Duration = .seconds(30)) async -> String? {
        if index < bodies.count { return bodies[index] }
        return await withCheckedContinuation { continuation in
            waiters.append((index, continuation))
            Task {
                try? await Task.sleep(for: timeout)
                self.expire(index)
            }
        }
    }

    private func expire(_ index: Int) {
        for (i, waiter) in waiters where i == index { waiter.resume(returning: nil) }
        waiters.removeAll { $0.0 == index }
    }
}

/// A real HTTP receiver on a loopback ephemeral port (Hummingbird, run live by its test framework).
private func withReceiver(_ inbox: Inbox, _ body: @escaping @Sendable (Int) async throws -> Void) async throws {
    let router = Router()
    router.post("/hook") { request, _ -> HTTPResponse.Status in
        let buffer = try await request.body.collect(upTo: 1 << 20)
        return await inbox.receive(String(buffer: buffer))
    }
    router.post("/api/v2/alerts") { request, _ -> HTTPResponse.Status in
        let buffer = try await request.body.collect(upTo: 1 << 20)
        return await inbox.receive(String(buffer: buffer))
    }
    let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
                          logger: Logger(label: "test.receiver"))
    try await app.test(.live) { client in
        try await body(try #require(client.port))
    }
}

/// A loopback port bound but not listening: connections to it are refused for as long as it is held.
private final class ClosedPort: Sendable {
    let fd: Int32
    let port: UInt16

    init() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) }
        }
        _ = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        self.fd = fd
        self.port = UInt16(bigEndian: addr.sin_port)
        try #require(fd >= 0 && bound == 0)
    }

    deinit { close(fd) }
}

/// `/proc/PID/stat` lines of processes in group `pgid` that are not zombies.
private func livingMembers(ofProcessGroup pgid: Int32) -> [String] {
    let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
    return entries.compactMap { entry -> String? in
        guard Int32(entry) != nil, let stat = try? String(contentsOfFile: "/proc/\(entry)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 2, Int32(fields[2]) == pgid, fields[0] != "Z", fields[0] != "X" else { return nil }
        return stat
    }
}

private func fastPoster(attempts: Int = 4, backoff: Duration = .milliseconds(50)) -> HTTPPoster {
    HTTPPoster(timeout: .seconds(5), attempts: attempts, backoff: backoff, maxBackoff: .seconds(2))
}

/// Runs the dispatcher's service loop for the duration of `body`.
private func running(_ dispatcher: AlertDispatcher, _ body: () async throws -> Void) async throws {
    let task = Task { try await dispatcher.run() }
    defer { task.cancel() }
    try await body()
}

// MARK: - Webhook

@Suite struct ChannelTests {
    @Test func webhookPostsTheDocumentedAlertJSON() async throws {
        let inbox = Inbox()
        try await withReceiver(inbox) { port in
            let hook = WebhookChannel(url: "http://127.0.0.1:\(port)/hook", poster: fastPoster())
            let dispatcher = AlertDispatcher(channels: [hook])
            try await running(dispatcher) {
                await dispatcher.enqueue([sampleAlert()])
                let body = try #require(await inbox.body(0))
                let doc = try parseObject(body)
                #expect(Set(doc.keys) == ["rule", "state", "severity", "protocol", "port", "metric", "value",
                                          "threshold", "since", "message", "instance"])
                #expect(doc["rule"] as? String == "web-crowded")
                #expect(doc["state"] as? String == "firing")
                #expect(doc["protocol"] as? String == "tcp")
                #expect(doc["port"] as? Int == 443)
                #expect(doc["value"] as? Int == 6012)
                #expect(doc["threshold"] as? Int == 5000)
                #expect(doc["since"] as? String == "2026-11-24T21:20:34.500Z")
                #expect(doc["instance"] as? String == "test-host")
            }
        }
    }

    @Test func webhookRetriesWhenTheReceiverAnswers500() async throws {
        let inbox = Inbox(failFirst: 2)
        try await withReceiver(inbox) { port in
            // A long attempt timeout: on a loaded machine a 500 answered after a short one would
            // be an extra (timed-out) attempt, and the count below is of answers, exactly.
            let poster = HTTPPoster(timeout: .seconds(60), attempts: 4, backoff: .milliseconds(50), maxBackoff: .seconds(2))
            let hook = WebhookChannel(url: "http://127.0.0.1:\(port)/hook", poster: poster)
            // Straight through the channel: it returns only once a 2xx came.
            try await hook.deliver(sampleAlert())
            #expect(await inbox.count == 3)
            let first = try #require(await inbox.body(0))
            #expect(await inbox.body(2) == first, "each retry carries the same alert")
        }
    }

    @Test func webhookGivesUpAfterItsBoundedAttempts() async throws {
        let dead = try ClosedPort()
        // AsyncHTTPClient retries a refused connect until the attempt's deadline: keep it short.
        let poster = HTTPPoster(timeout: .milliseconds(300), attempts: 3, backoff: .milliseconds(50))
        let hook = WebhookChannel(url: "http://127.0.0.1:\(dead.port)/hook", poster: poster)
        await #expect(throws: DeliveryError.self) { try await hook.deliver(sampleAlert()) }
    }

    @Test func deadReceiverDelaysNoOtherChannelAndDropsAreCounted() async throws {
        let dead = try ClosedPort()
        let inbox = Inbox()
        try await withReceiver(inbox) { port in
            // The dead channel backs off for seconds per alert, so its small queue overflows. It
            // never gives its first alert up while the test runs (however slowly a loaded machine
            // runs it): the dispatcher's cancellation at the end stops its retries.
            let deadHook = WebhookChannel(url: "http://127.0.0.1:\(dead.port)/hook",
                                          poster: fastPoster(attempts: 10_000, backoff: .seconds(2)), name: "dead")
            let liveHook = WebhookChannel(url: "http://127.0.0.1:\(port)/hook", poster: fastPoster(), name: "live")
            let capacity = 4
            let dispatcher = AlertDispatcher(channels: [deadHook, liveHook], capacity: capacity)
            try await running(dispatcher) {
                let total = 20
                // One at a time with the live receiver confirming each, so the live queue never holds more than one.
                // Delivery is at least once: on a loaded machine a POST answered after the
                // poster's timeout is sent again, so a repeat of an earlier alert may come first.
                var cursor = 0
                for i in 0..<total {
                    await dispatcher.enqueue([sampleAlert("rule-\(i)")])
                    var arrived = false
                    for _ in 0..<10 {
                        let body = try #require(await inbox.body(cursor), "live channel got alert \(i) while the other is dead")
                        cursor += 1
                        let rule = try parseObject(body)["rule"] as? String ?? ""
                        if rule == "rule-\(i)" { arrived = true; break }
                        let earlier = Int(rule.dropFirst("rule-".count)).map { $0 < i } ?? false
                        #expect(earlier, "only a repeat of an earlier alert may come before rule-\(i): \(rule)")
                    }
                    #expect(arrived, "rule-\(i) reached the live receiver")
                }
                let drops = await dispatcher.dropped()
                #expect(drops["live"] == 0)
                // At most one alert in flight and `capacity` queued; everything else was dropped.
                #expect((drops["dead"] ?? 0) >= total - capacity - 1)
            }
        }
    }

    /// A refresh (the periodic re-send) that finds a channel's queue full pushes out its oldest
    /// alert like a new alert does, and that drop is counted too.
    @Test func aRefreshThatPushesAnAlertOutCountsTheDrop() async throws {
        // Not running: nothing is taken off the queues, so they fill exactly.
        let dispatcher = AlertDispatcher(channels: [LogChannel()], capacity: 2)
        await dispatcher.enqueue([sampleAlert("a"), sampleAlert("b")])
        #expect(await dispatcher.dropped()["log"] == 0)
        await dispatcher.tick()
        #expect(await dispatcher.dropped()["log"] == 1)
        await dispatcher.tick()  // pushes out "b"
        await dispatcher.tick()  // pushes out a refresh: no alert lost
        #expect(await dispatcher.dropped()["log"] == 2)
    }

    @Test(.timeLimit(.minutes(1)))
    func dispatcherStopsOnGracefulShutdown() async throws {
        let dispatcher = AlertDispatcher(channels: [LogChannel()])
        let group = ServiceGroup(configuration: .init(services: [dispatcher], logger: Logger(label: "test")))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            await dispatcher.enqueue([sampleAlert()])
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
        #expect(await dispatcher.dropped() == ["log": 0])
    }

    @Test func dispatcherReSendsFiringAlertsToAlertmanagerEachRefresh() async throws {
        let inbox = Inbox()
        try await withReceiver(inbox) { port in
            let am = AlertmanagerChannel(url: "http://127.0.0.1:\(port)", poster: fastPoster())
            // A short refresh interval stands in for the minute.
            let dispatcher = AlertDispatcher(channels: [am], refreshInterval: .milliseconds(100))
            try await running(dispatcher) {
                await dispatcher.enqueue([sampleAlert(since: 1000)])
                let first = try #require(await inbox.body(0))
                let resent = try #require(await inbox.body(2), "two refreshes re-sent the firing alert")
                #expect(resent == first)
                #expect(first.contains(#""startsAt":"1970-01-01T00:16:40.000Z""#) && !first.contains("endsAt"))
                await dispatcher.enqueue([sampleAlert(state: .resolved, since: 2000)])
                // The resolution goes out with endsAt and the original startsAt (after any refresh already queued).
                var resolved: String?
                for i in 3..<20 {
                    guard let body = await inbox.body(i) else { break }
                    if body.contains("endsAt") { resolved = body; break }
                }
                #expect(resolved?.contains(#""startsAt":"1970-01-01T00:16:40.000Z","endsAt":"1970-01-01T00:33:20.000Z""#) == true)
            }
        }
    }

    // MARK: - Exec

    @Test func execGivesTheAlertJSONOnStdin() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("pw-exec-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("alert.json").path
        let channel = ExecChannel(command: ["/bin/sh", "-c", "cat > \"$0\"; exit 3", out], timeout: .seconds(30))
        let result = await channel.run(sampleAlert(state: .resolved))
        #expect(result == .exited(status: 3))
        let doc = try parseObject(try String(contentsOfFile: out, encoding: .utf8))
        #expect(doc["rule"] as? String == "web-crowded")
        #expect(doc["state"] as? String == "resolved")
        #expect(doc["port"] as? Int == 443)
    }

    @Test func execKillsAHangingCommandAtItsTimeout() async throws {
        let channel = ExecChannel(command: ["/bin/sleep", "600"], timeout: .milliseconds(200))
        let result = await channel.run(sampleAlert())
        guard case .timedOut(let pid) = result else {
            Issue.record("expected a timeout, got \(result)")
            return
        }
        #expect(kill(pid, 0) == -1 && errno == ESRCH, "the command is gone and reaped")
    }

    @Test func execKillsACommandThatIgnoresSIGTERMAndItsChildren() async throws {
        let channel = ExecChannel(command: ["/bin/sh", "-c", "trap '' TERM; /bin/sleep 600 & wait"],
                                  timeout: .milliseconds(200))
        let result = await channel.run(sampleAlert())
        guard case .timedOut(let pid) = result else {
            Issue.record("expected a timeout, got \(result)")
            return
        }
        // The whole process group went: the shell and the sleep it started (the sleep, orphaned, may
        // linger as a zombie until init reaps it, so "dead" means gone or state Z).
        var alive: [String] = []
        for _ in 0..<200 {
            alive = livingMembers(ofProcessGroup: pid)
            if alive.isEmpty { break }
            try await Task.sleep(for: .milliseconds(10))
        }
        #expect(alive.isEmpty)
    }

    @Test func execCommandDiesWithItsCancelledTask() async throws {
        let channel = ExecChannel(command: ["/bin/sleep", "600"], timeout: .seconds(600))
        let task = Task { await channel.run(sampleAlert()) }
        task.cancel()
        let result = await task.value
        guard case .timedOut(let pid) = result else {
            Issue.record("expected the command killed, got \(result)")
            return
        }
        #expect(kill(pid, 0) == -1 && errno == ESRCH)
    }

    @Test func execOfAMissingProgramSaysSo() async {
        let result = await ExecChannel(command: ["/nonexistent/notify"]).run(sampleAlert())
        guard case .failedToStart = result else {
            Issue.record("expected failedToStart, got \(result)")
            return
        }
    }

    // MARK: - Alertmanager

    @Test func alertmanagerDocumentHasLabelsAndEndsAtOnResolve() {
        let firing = AlertmanagerChannel.document(sampleAlert(), startsAt: 100).serialized()
        #expect(firing.contains(#""labels":{"alertname":"web-crowded","protocol":"tcp","port":"443","severity":"warning","instance":"test-host"}"#))
        #expect(!firing.contains("endsAt"))
        let resolved = AlertmanagerChannel.document(sampleAlert(state: .resolved, since: 200), startsAt: 100).serialized()
        #expect(resolved.contains(#""startsAt":"1970-01-01T00:01:40.000Z","endsAt":"1970-01-01T00:03:20.000Z""#))
    }

    @Test(.enabled(if: AlertmanagerProcess.binary != nil, "prometheus-alertmanager is not installed (Debian package prometheus-alertmanager)"))
    func realAlertmanagerListsTheAlertAndDropsItOnResolve() async throws {
        let am = try await AlertmanagerProcess.start()
        defer { am.stop() }
        let channel = AlertmanagerChannel(url: am.url + "/", poster: fastPoster())
        let started = Double(Int(Date().timeIntervalSince1970))
        try await channel.deliver(sampleAlert(since: started))

        let listed = try await am.alerts()
        let alert = try #require(listed.first { ($0["labels"] as? [String: String])?["alertname"] == "web-crowded" })
        #expect(alert["labels"] as? [String: String] == ["alertname": "web-crowded", "protocol": "tcp", "port": "443",
                                                         "severity": "warning", "instance": "test-host"])
        #expect((alert["status"] as? [String: Any])?["state"] as? String == "active")
        #expect(alert["startsAt"] as? String == rfc3339(started))
        #expect((alert["annotations"] as? [String: String])?["summary"]?.contains("above 5000") == true)

        // The minute re-send reaches it again (its updatedAt moves on).
        let updated = alert["updatedAt"] as? String
        try await channel.refresh()
        let again = try await am.alerts().first { ($0["labels"] as? [String: String])?["alertname"] == "web-crowded" }
        #expect(again?["updatedAt"] as? String != updated)

        // Resolved: sent with endsAt, Alertmanager stops listing it as active.
        try await channel.deliver(sampleAlert(state: .resolved, since: Date().timeIntervalSince1970))
        let after = try await am.alerts()
        #expect(!after.contains { ($0["labels"] as? [String: String])?["alertname"] == "web-crowded" })
    }
}

/// A real Alertmanager on free loopback ports with a temporary storage directory.
struct AlertmanagerProcess {
    static let binary: String? = ["/usr/bin/prometheus-alertmanager", "/usr/bin/alertmanager"]
        .first { FileManager.default.isExecutableFile(atPath: $0) }

    let process: Process
    let url: String
    let dir: URL

    static func start() async throws -> AlertmanagerProcess {
        let binary = try #require(binary)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("pw-am-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let config = dir.appendingPathComponent("alertmanager.yml")
        try "route:\n  receiver: none\nreceivers:\n  - name: none\n".write(to: config, atomically: true, encoding: .utf8)
        // Retry on the rare race where another test takes the port between probe and bind.
        for _ in 0..<5 {
            let port = try ClosedPort().port
            let process = Process()
            process.executableURL = URL(fileURLWithPath: binary)
            process.arguments = ["--config.file=\(config.path)", "--storage.path=\(dir.appendingPathComponent("data").path)",
                                 "--web.listen-address=127.0.0.1:\(port)", "--cluster.listen-address="]
            let log = FileHandle(forWritingAtPath: "/dev/null")
            process.standardOutput = log
            process.standardError = log
            try process.run()
            let am = AlertmanagerProcess(process: process, url: "http://127.0.0.1:\(port)", dir: dir)
            if try await am.waitReady() { return am }
            am.stop(removing: false)
        }
        try? FileManager.default.removeItem(at: dir)
        throw AlertmanagerError.notReady
    }

    enum AlertmanagerError: Error { case notReady, badAnswer }

    /// Polls `/-/ready` (its readiness signal) for up to 30 s; false if the process died.
    func waitReady() async throws -> Bool {
        for _ in 0..<300 {
            guard process.isRunning else { return false }
            var request = HTTPClientRequest(url: url + "/-/ready")
            request.method = .GET
            if let response = try? await HTTPClient.shared.execute(request, timeout: .seconds(2)) {
                _ = try? await response.body.collect(upTo: 1 << 16)
                if response.status == .ok { return true }
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        return false
    }

    func alerts() async throws -> [[String: Any]] {
        let response = try await HTTPClient.shared.execute(HTTPClientRequest(url: url + "/api/v2/alerts"), timeout: .seconds(5))
        let body = try await response.body.collect(upTo: 1 << 20)
        guard response.status == .ok,
              let list = try JSONSerialization.jsonObject(with: Data(String(buffer: body).utf8)) as? [[String: Any]]
        else { throw AlertmanagerError.badAnswer }
        return list
    }

    func stop(removing: Bool = true) {
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
        if removing { try? FileManager.default.removeItem(at: dir) }
    }
}

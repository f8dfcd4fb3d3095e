// The security detectors end to end: real scans, floods and storms from one network namespace
// against another where `portwatch top --capture` watches (run inside the target namespace, so
// the capture and the socket table are that namespace's). Namespaces, veth pair and servers
// come from `NetnsLab` and are deleted whatever happens; every attack is bounded by its port
// list, packet count or loop count, and by a timeout.
//
// Needs root, ip, nft, python3, and nmap / hping3 (Debian packages; CI installs them).

import Foundation
import Testing
import PortwatchTestSupport
#if canImport(Glibc)
import Glibc
#endif

private enum DetectPort {
    /// Accepts and closes (python3 `tcp`).
    static let open: UInt16 = 18180
    /// Listens with a small backlog and never accepts (python3 `tcp-idle`, backlog 16).
    static let stuck: UInt16 = 18181
}

/// `top --capture --json` in the lab's server namespace, read one refresh at a time.
private final class TopWatch {
    let run: PortwatchRun
    private(set) var documents: [[String: Any]] = []

    init(_ lab: NetnsLab) throws {
        // At most 2 minutes of refreshes; the test stops it as soon as it has seen enough.
        run = try startPortwatchWhenReady(["top", "--capture", "--json", "--interval", "500ms", "--iterations", "240"],
                                          netns: lab.server)
    }

    /// Every security event reported so far.
    var events: [[String: Any]] { documents.flatMap { $0.objects("security_events") } }

    func started(_ kind: String) -> [[String: Any]] {
        events.filter { $0.string("kind") == kind && $0.string("phase") == "started" }
    }

    /// Reads refreshes until `done` holds, then `more` refreshes (so a second detection of the
    /// same thing would show), or until `timeout` seconds pass; then stops portwatch.
    func read(more: Int = 6, timeout: Double = 30, until done: (TopWatch) -> Bool) {
        let deadline = monotonic() + timeout
        var extra = -1
        while monotonic() < deadline, extra < more {
            guard let line = run.child.readLine(timeout: max(0.1, deadline - monotonic())) else { break }
            if let data = line.data(using: .utf8),
               let doc = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] {
                documents.append(doc)
            }
            if extra >= 0 { extra += 1 } else if done(self) { extra = 0 }
        }
        run.child.kill()
        _ = run.finish(timeout: 5)
    }
}

private func tool(_ name: String) -> String? { TestEnv.which(name) }

@Suite("detectors: scans, floods and storms between namespaces", .blocking,
       .enabled(if: TestEnv.canCreateNamespaces && tool("nmap") != nil,
                "needs root with CAP_NET_ADMIN, ip, nft, python3 and nmap"),
       .serialized)
struct DetectorTests {
    private func withLab(_ body: (NetnsLab) throws -> Void) throws {
        let lab = try NetnsLab()
        defer { lab.destroy() }
        _ = try lab.startServer(["tcp::::\(DetectPort.open)", "tcp-idle::::\(DetectPort.stuck)"], in: lab.server)
        try body(lab)
    }

    @Test("nmap scans: exactly one scan_detected per scan, naming the scanner and the kind",
          arguments: [("-sT", "syn"), ("-sS", "syn"), ("-sF", "fin"), ("-sN", "null"), ("-sX", "xmas"), ("-sU", "udp")])
    func nmapScan(_ flag: String, _ kind: String) throws {
        try withLab { lab in
            let watch = try TopWatch(lab)
            let ports = "\(DetectPort.open - 10)-\(DetectPort.open + 30)"  // 41 ports, the open one among them
            let scan = lab.exec(lab.client, [tool("nmap")!, flag, "-Pn", "-n", "-T5", "--max-retries", "1",
                                             "--host-timeout", "60s", "-p", ports, lab.serverV4], timeout: 90)
            #expect(scan.status == 0, "nmap \(flag): \(scan.stderr)")
            watch.read { !$0.started("scan_detected").isEmpty }
            let scans = watch.started("scan_detected")
            #expect(scans.count == 1, "\(flag): \(watch.events)")
            #expect(scans.first?.string("source") == lab.clientV4)
            #expect(scans.first?.string("scan_kind") == kind)
            #expect((scans.first?.int("ports_touched") ?? 0) >= 20)
            #expect(watch.started("connection_storm").isEmpty && watch.started("flood_detected").isEmpty)
        }
    }

    @Test func benignLoadAndAnOutgoingScanAreNoDetection() throws {
        try withLab { lab in
            let watch = try TopWatch(lab)
            // Many connections to one open port from two client addresses (IPv4 and IPv6).
            let clients = """
                import socket, sys
                for host in sys.argv[1:]:
                    for i in range(60):
                        s = socket.create_connection((host, \(DetectPort.open)), timeout=5)
                        s.close()
                """
            let load = lab.exec(lab.client, [TestEnv.python3!, "-c", clients, lab.serverV4, lab.serverV6], timeout: 60)
            #expect(load.status == 0, "\(load.stderr)")
            // The watched host scans the other namespace: its own SYNs out and the RSTs back are not a scan of it.
            let out = lab.exec(lab.server, [tool("nmap")!, "-sS", "-Pn", "-n", "-T5", "--max-retries", "1",
                                            "-p", "1-200", lab.clientV4], timeout: 60)
            #expect(out.status == 0, "\(out.stderr)")
            let outUDP = lab.exec(lab.server, [tool("nmap")!, "-sU", "-Pn", "-n", "-T5", "--max-retries", "0",
                                               "-p", "1-60", lab.clientV4], timeout: 60)
            #expect(outUDP.status == 0, "\(outUDP.stderr)")
            // Refreshes that cover everything above: read until one is taken after it all ended.
            let after = Date().timeIntervalSince1970
            watch.read(more: 4) { w in w.documents.contains { ($0["taken_at"] as? Double ?? 0) > after } }
            #expect(watch.documents.count >= 4)
            #expect(watch.events.isEmpty, "\(watch.events)")
        }
    }

    @Test func aLoopOfShortConnectionsIsAConnectionStorm() throws {
        try withLab { lab in
            let watch = try TopWatch(lab)
            let loop = """
                import socket, sys
                for i in range(150):
                    s = socket.create_connection((sys.argv[1], \(DetectPort.open)), timeout=5)
                    s.close()
                """
            let r = lab.exec(lab.client, [TestEnv.python3!, "-c", loop, lab.serverV4], timeout: 60)
            #expect(r.status == 0, "\(r.stderr)")
            watch.read { !$0.started("connection_storm").isEmpty }
            let storms = watch.started("connection_storm")
            #expect(storms.count == 1, "\(watch.events)")
            #expect(storms.first?.string("source") == lab.clientV4)
            #expect(storms.first?.int("port") == Int(DetectPort.open))
            #expect(watch.started("scan_detected").isEmpty)
        }
    }

    @Test(.enabled(if: tool("hping3") != nil, "needs hping3"))
    func aSynFloodOnASmallBacklogIsAFloodOnThatPort() throws {
        try withLab { lab in
            let watch = try TopWatch(lab)
            let r = lab.exec(lab.client, [tool("hping3")!, "-q", "-S", "-p", String(DetectPort.stuck), "-c", "20000",
                                          "-i", "u100", lab.serverV4], timeout: 90)
            #expect(r.status == 0 || r.status == 1, "hping3: \(r.stderr)")  // 1: some probes unanswered
            watch.read { !$0.started("flood_detected").isEmpty }
            let floods = watch.started("flood_detected")
            #expect(floods.count == 1, "\(watch.events)")
            #expect(floods.first?.int("port") == Int(DetectPort.stuck))
            #expect(floods.first?.objects("sources").first?.string("address") == lab.clientV4)
            #expect(((floods.first?["rate"] as? Double) ?? 0) > 0)
            #expect(watch.started("scan_detected").isEmpty)
        }
    }
}

@Suite("detectors: the daemon in the target namespace", .blocking,
       .enabled(if: TestEnv.canCreateNamespaces && tool("nmap") != nil,
                "needs root with CAP_NET_ADMIN, ip, nft, python3 and nmap"),
       .serialized)
struct DaemonDetectorTests {
    /// GET on the daemon's loopback inside `netns` (python3 there, so the test needs no route in).
    private func get(_ lab: NetnsLab, _ netns: String, _ url: String) -> String {
        let script = "import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())"
        return lab.exec(netns, [TestEnv.python3!, "-c", script, url], timeout: 20).stdout
    }

    @Test func aScanAndAStormAreEventsInHistoryAndTheAPIAndCountedInMetrics() throws {
        let lab = try NetnsLab()
        defer { lab.destroy() }
        _ = try lab.startServer(["tcp::::\(DetectPort.open)"], in: lab.server)
        let dir = try makeTemporaryDirectory("detect-daemon")
        defer { removeTree(dir) }
        let config = dir + "/portwatch.yml"
        try """
            interval: 500ms
            capture: true
            detectors:
              port_scan: {ports: 15, window: 3s}
              syn_flood: true
              connection_storm: {connections: 50, window: 30s}
            """.write(toFile: config, atomically: true, encoding: .utf8)
        let db = dir + "/history.sqlite"
        // Nothing else lives in the namespace: the default port is free there.
        let run = try startPortwatch(["daemon", "--config", config, "--db", db, "--listen", "127.0.0.1:9910"],
                                     environment: ["PORTWATCH_LOG_LEVEL": "debug"], netns: lab.server)
        let log = StderrLines(run.child)
        defer {
            _ = Glibc.kill(run.child.pid, SIGTERM)
            if run.child.wait(timeout: 30) == nil { run.child.kill() }
        }
        let ready = log.waitFor(timeout: 90) { $0.hasPrefix("portwatch: daemon ready: ") }
        try #require(ready != nil, "no readiness line: \(log.text.suffix(3000))")
        // The baseline sample is taken: what follows falls in a window.
        _ = log.waitFor(from: ready!, timeout: 30, DaemonCLITests.isSampleLine)

        let scan = lab.exec(lab.client, [tool("nmap")!, "-sS", "-Pn", "-n", "-T5", "--max-retries", "1",
                                         "-p", "20000-20040", lab.serverV4], timeout: 60)
        #expect(scan.status == 0, "\(scan.stderr)")
        let loop = """
            import socket, sys
            for i in range(80):
                s = socket.create_connection((sys.argv[1], \(DetectPort.open)), timeout=5)
                s.close()
            """
        #expect(lab.exec(lab.client, [TestEnv.python3!, "-c", loop, lab.serverV4], timeout: 60).status == 0)

        func events() -> [[String: Any]] {
            guard let data = get(lab, lab.server, "http://127.0.0.1:9910/api/v1/events?since=1h").data(using: .utf8),
                  let doc = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else { return [] }
            return doc.objects("events")
        }
        // Counted in the daemon's samples: at most 20 of them (10 s) for both to show.
        var from = log.drain()
        var seen: [[String: Any]] = []
        for _ in 0..<20 {
            seen = events()
            let kinds = Set(seen.compactMap { $0.string("kind") })
            if kinds.contains("scan_detected") && kinds.contains("connection_storm") { break }
            guard let i = log.waitFor(from: from, timeout: 30, DaemonCLITests.isSampleLine) else { break }
            from = i + 1
        }
        let scans = seen.filter { $0.string("kind") == "scan_detected" && $0.string("phase") == "started" }
        #expect(scans.count == 1, "\(seen)")
        #expect(scans.first?.string("source") == lab.clientV4)
        #expect(scans.first?.string("scan_kind") == "syn")
        #expect((scans.first?.int("ports_touched") ?? 0) >= 15)
        let storms = seen.filter { $0.string("kind") == "connection_storm" && $0.string("phase") == "started" }
        #expect(storms.count == 1, "\(seen)")
        #expect(storms.first?.int("port") == Int(DetectPort.open))
        #expect(storms.first?.string("source") == lab.clientV4)

        let metrics = get(lab, lab.server, "http://127.0.0.1:9910/metrics")
        #expect(metrics.contains("portwatch_scan_detected_total{kind=\"syn\"} 1"), "\(metrics.prefix(3000))")
        #expect(metrics.contains("portwatch_connection_storm_total 1"))
        if let promtool = tool("promtool") {
            let path = dir + "/metrics.txt"
            try metrics.write(toFile: path, atomically: true, encoding: .utf8)
            let check = runTool("/bin/sh", ["-c", "\(promtool) check metrics < \(path)"], timeout: 30)
            #expect(check.status == 0, "promtool: \(check.stdout) \(check.stderr)")
        }
        // The history holds them too (`portwatch events` reads the file directly).
        let stored = runPortwatch(["events", "--db", db, "--since", "1h", "--json"], timeout: 30)
        #expect(stored.stdout.contains("\"scan_detected\""), "\(stored)")
    }
}

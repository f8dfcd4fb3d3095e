// Per-namespace packet capture (issue 9): `--capture` with `--all-namespaces` / `--netns` opens
// a capture inside each namespace, so what only packets tell — UDP bytes, connect attempts
// refused by a closed port, resets — is counted in the namespace it happened in. Three named
// namespaces of the test's own (names carry our pid) each run the same ports with different
// amounts of traffic; a namespace's counts must be exactly its own, never the host's or a
// neighbour's. Everything is deleted by `defer`, also when an expectation fails.

import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Serves UDP (echo) on UDP_PORT and TCP on TCP_PORT (127.0.0.1), prints its pid, and on each
/// "go" line, from SOURCE (a loopback address of the test's own): sends DATAGRAMS echoed datagrams of SIZE bytes, makes REFUSED connects to
/// CLOSED_PORT (each SYN answered by a RST), sends UNREACHABLE datagrams to CLOSED_PORT (each
/// answered by ICMP port unreachable), aborts ABORTS connections to TCP_PORT (SO_LINGER 0: the
/// client sends a RST), then prints "done".
private let trafficScript = #"""
import os, socket, struct, sys
udp_port, tcp_port, closed, datagrams, size, refused, unreachable, aborts = (int(a) for a in sys.argv[1:9])
src = sys.argv[9]
srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
srv.bind(("127.0.0.1", udp_port))
lst = socket.socket()
lst.bind(("127.0.0.1", tcp_port))
lst.listen(16)
print(os.getpid(), flush=True)
for line in sys.stdin:
    if not line.startswith("go"):
        continue
    cli = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    cli.bind((src, 0))
    for _ in range(datagrams):
        cli.sendto(b"u" * size, ("127.0.0.1", udp_port))
        data, peer = srv.recvfrom(65536)
        srv.sendto(data, peer)
        cli.recvfrom(65536)
    cli.close()
    for _ in range(refused):
        try:
            socket.create_connection(("127.0.0.1", closed), timeout=5, source_address=(src, 0)).close()
        except ConnectionRefusedError:
            pass
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind((src, 0))
    for _ in range(unreachable):
        probe.sendto(b"?", ("127.0.0.1", closed))
    probe.close()
    for _ in range(aborts):
        c = socket.create_connection(("127.0.0.1", tcp_port), source_address=(src, 0))
        s, _ = lst.accept()
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()
        s.close()
    print("done", flush=True)
"""#

/// What one namespace of the lab does per "go", and so what its capture must count.
struct CaptureLoad: Hashable {
    var datagrams: Int
    var size: Int
    var refused: Int
    var unreachable: Int
    var aborts: Int
}

/// Named namespaces, each with a traffic child on the same three ports.
final class CaptureLab: NamespaceLab, @unchecked Sendable {
    // @unchecked: `members` is written only by `init`; the lab locks its own state.
    struct Member {
        var name: String
        var inode: UInt64
        var child: Child
        var load: CaptureLoad
        /// The loopback address its traffic comes from: no other test's traffic has it, so the
        /// host's capture seeing it would be a leak, not a coincidence.
        var source: String
    }

    let udpPort: UInt16
    let tcpPort: UInt16
    let closedPort: UInt16
    private(set) var members: [Member] = []

    /// Builds the lab; a failure midway deletes what was made (`deinit`).
    init(count: Int) throws {
        let k = NamespaceLab.nextSerial()
        // Low ports nothing else in the tests uses, so the host namespace has nothing on them
        // (what the host's capture sees there must stay 0).
        let base = UInt16(600 + (Int(getpid()) * 3 + k * 3) % 300)
        (udpPort, tcpPort, closedPort) = (base, base + 1, base + 2)
        try super.init(names: (1...count).map { "pwcap-\(getpid())-\(k)-\($0)" })
        for (i, ns) in zip(1..., namespaces) {
            // Different amounts per namespace: a count landing in the wrong one shows.
            let load = CaptureLoad(datagrams: 10 * i + 3, size: 100 + 11 * i, refused: i + 1, unreachable: i, aborts: i)
            let source = "127.77.\(Int(base) % 250).\(i)"
            let (child, _) = try startPython(trafficScript, [udpPort, tcpPort, closedPort].map { String($0) }
                + [load.datagrams, load.size, load.refused, load.unreachable, load.aborts].map { String($0) } + [source],
                in: .named(ns.name))
            members.append(Member(name: ns.name, inode: ns.inode, child: child, load: load, source: source))
        }
    }

    /// Makes every namespace's traffic once and waits until each child has finished it.
    func traffic() throws {
        try tell(members.map(\.child), "go", awaiting: "done", timeout: 30)
    }
}

/// What capture counted in one namespace (summed over refreshes).
struct CapturedTotals: Hashable {
    var udpReceived = 0
    var udpSent = 0
    var udpPacketsReceived = 0
    var udpPacketsSent = 0
    var refusedHits = 0
    var unreachableHits = 0
    var resetsReceived = 0

    /// Exactly what `load` makes on the lab's ports.
    init(expected load: CaptureLoad) {
        udpReceived = load.datagrams * load.size
        udpSent = load.datagrams * load.size
        udpPacketsReceived = load.datagrams
        udpPacketsSent = load.datagrams
        refusedHits = load.refused
        unreachableHits = load.unreachable
        resetsReceived = load.aborts
    }

    init() {}

    /// Adds one document's counts for the namespace `inode` (nil: rows and hits without a
    /// namespace, or the host's own).
    mutating func add(_ doc: [String: Any], lab: CaptureLab, inode: UInt64?) {
        func mine(_ object: [String: Any]) -> Bool {
            guard let ns = object.object("namespace") else { return inode == nil }
            if let inode { return (ns["inode"] as? NSNumber)?.uint64Value == inode }
            return ns.bool("own") == true
        }
        for row in doc.objects("ports") where mine(row) && row.string("role") == "local" {
            let window = row.object("window")
            if row.string("protocol") == "udp" && row.int("port") == Int(lab.udpPort) {
                udpReceived += window?.object("bytes")?.int("received") ?? 0
                udpSent += window?.object("bytes")?.int("sent") ?? 0
                udpPacketsReceived += window?.object("packets")?.int("received") ?? 0
                udpPacketsSent += window?.object("packets")?.int("sent") ?? 0
            }
            if row.string("protocol") == "tcp" && row.int("port") == Int(lab.tcpPort) {
                resetsReceived += window?.object("errors")?.int("resets_received") ?? 0
            }
        }
        let sources = Set(lab.members.map(\.source))
        for hit in doc.objects("closed_port_hits")
        where mine(hit) && hit.int("port") == Int(lab.closedPort) && sources.contains(hit.string("source") ?? "") {
            if hit.string("protocol") == "tcp" { refusedHits += hit.int("packets") ?? 0 }
            if hit.string("protocol") == "udp" { unreachableHits += hit.int("packets") ?? 0 }
        }
    }
}

@Suite("namespaces: packet capture per namespace", .blocking, .serialized,
       .enabled(if: TestEnv.isRoot && TestEnv.canCreateNamespaces,
                "needs root (CAP_SYS_ADMIN to make and enter namespaces, CAP_NET_RAW to capture), ip and python3"))
struct NamespaceCaptureTests {
    /// `top --json --all-namespaces --capture`: each namespace's UDP bytes and packets, refused
    /// connects, ICMP-answered datagrams and resets are counted in that namespace, exactly,
    /// and none of it in the host's namespace.
    @Test func topCapturesInsideEveryNamespace() throws {
        let lab = try CaptureLab(count: 3)
        defer { lab.destroy() }
        let run = try startPortwatchWhenReady(["top", "--json", "--all-namespaces", "--capture", "--interval", "300ms",
                                               "--iterations", "100"])
        defer { run.child.kill() }
        try lab.traffic()
        var totals: [UInt64: CapturedTotals] = [:]
        var host = CapturedTotals()
        var lines: [String] = []
        // Refreshes until every namespace's counts are in, and two more: a late double count
        // (or a count arriving in the wrong namespace) would show there.
        var extra = 0
        while extra < 3, let line = run.child.readLine(timeout: 30) {
            lines.append(line)
            let doc = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "\(line)")
            for m in lab.members { totals[m.inode, default: CapturedTotals()].add(doc, lab: lab, inode: m.inode) }
            host.add(doc, lab: lab, inode: nil)
            if lab.members.allSatisfy({ totals[$0.inode] == CapturedTotals(expected: $0.load) }) { extra += 1 }
        }
        let tail = lines.suffix(3).joined(separator: "\n").prefix(6000)
        for m in lab.members {
            #expect(totals[m.inode] == CapturedTotals(expected: m.load), "\(m.name): \(String(describing: totals[m.inode])); \(tail)")
        }
        #expect(host == CapturedTotals(), "the host's namespace counted namespace traffic: \(host)")
    }

    /// `ports --sample --capture --netns NAME --json`: one namespace's capture, its closed-port
    /// hits tagged with it; a neighbour's traffic in the same window is not counted.
    @Test func sampleWithNetnsCapturesThatNamespaceOnly() throws {
        let lab = try CaptureLab(count: 2)
        defer { lab.destroy() }
        let (watched, other) = (lab.members[0], lab.members[1])
        let run = try startPortwatchWhenReady(["ports", "--sample", "4s", "--capture", "--netns", watched.name, "--json"])
        try lab.traffic()
        let r = run.finish(timeout: 30)
        #expect(r.status == 0, "\(r)")
        let doc = try #require(r.json())
        var got = CapturedTotals()
        got.add(doc, lab: lab, inode: watched.inode)
        #expect(got == CapturedTotals(expected: watched.load), "\(got); \(r)")
        var leaked = CapturedTotals()
        leaked.add(doc, lab: lab, inode: other.inode)
        #expect(leaked == CapturedTotals(), "\(leaked)")
        for hit in doc.objects("closed_port_hits") {
            #expect(hit.object("namespace")?.string("name") == watched.name, "\(hit)")
        }
    }
}

@Suite("namespaces: the daemon's capture per namespace", .blocking, .serialized,
       .enabled(if: TestEnv.isRoot && TestEnv.canCreateNamespaces,
                "needs root (CAP_SYS_ADMIN to make and enter namespaces, CAP_NET_RAW to capture), ip and python3"))
struct NamespaceDaemonCaptureTests {
    /// With `capture: true` and `namespaces: [a, b]`, the UDP traffic of each namespace (which
    /// only the capture measures) adds up in that namespace's `netns`-labelled counters, exactly.
    @Test func daemonCapturesInsideEachNamespace() throws {
        let lab = try CaptureLab(count: 2)
        defer { lab.destroy() }
        let dir = try makeTemporaryDirectory("netns-capture")
        defer { removeTree(dir) }
        let config = dir + "/portwatch.yml"
        try "interval: 300ms\ncapture: true\nnamespaces: [\(lab.members.map(\.name).joined(separator: ", "))]\n"
            .write(toFile: config, atomically: true, encoding: .utf8)
        let daemon = try LiveDaemon(["--config", config], directory: dir)
        defer { daemon.stop() }

        /// `portwatch_port_NAME{protocol="udp",port=P,netns=NS}`, or nil while the series is missing.
        func counter(_ name: String, _ ns: String?, in text: String) -> Int? {
            for line in text.split(separator: "\n") where line.hasPrefix("portwatch_port_\(name){") {
                guard line.contains("protocol=\"udp\""), line.contains("port=\"\(lab.udpPort)\"") else { continue }
                let labelled = line.contains("netns=")
                if let ns, !line.contains("netns=\"\(ns)\"") { continue }
                if ns == nil && labelled { continue }
                return line.split(separator: " ").last.flatMap { Double($0) }.map { Int($0) }
            }
            return nil
        }
        // The daemon watches both namespaces' UDP service before any traffic (its first sample
        // of a namespace is a baseline).
        let watching = daemon.within(samples: 40) { () -> Bool? in
            guard let text = daemon.get("/metrics")?.body else { return nil }
            return lab.members.allSatisfy { counter("received_bytes_total", $0.name, in: text) != nil } ? true : nil
        }
        try #require(watching == true, "no netns series: \(daemon.log.text.suffix(2000))")
        try lab.traffic()
        func totals(_ text: String) -> [String: [Int?]] {
            Dictionary(uniqueKeysWithValues: lab.members.map { m in
                (m.name, ["received_bytes_total", "sent_bytes_total", "received_packets_total", "sent_packets_total"]
                    .map { counter($0, m.name, in: text) })
            })
        }
        let expected = Dictionary(uniqueKeysWithValues: lab.members.map { m in
            (m.name, [m.load.datagrams * m.load.size, m.load.datagrams * m.load.size, m.load.datagrams, m.load.datagrams] as [Int?])
        })
        var last: [String: [Int?]] = [:]
        _ = daemon.within(samples: 40) { () -> Bool? in
            guard let text = daemon.get("/metrics")?.body else { return nil }
            last = totals(text)
            return last == expected ? true : nil
        }
        #expect(last == expected, "\(daemon.log.text.suffix(2000))")
        // A few samples later nothing was counted twice, and the daemon's own namespace has no
        // series for the port (nothing listens on it there).
        _ = daemon.within(samples: 3) { () -> Bool? in nil }
        let text = daemon.get("/metrics")?.body ?? ""
        #expect(totals(text) == expected)
        #expect(counter("received_bytes_total", nil, in: text) == nil)
    }
}

@Suite("namespaces: detections per namespace", .blocking, .serialized,
       .enabled(if: TestEnv.isRoot && TestEnv.canCreateNamespaces && TestEnv.which("nmap") != nil,
                "needs root, ip, nft, python3 and nmap"))
struct NamespaceDetectionTests {
    /// `top --json --all-namespaces --capture` from the host while one namespace scans another
    /// over a veth pair: exactly one `scan_detected`, tagged with the scanned namespace; the
    /// scanner's namespace (its own SYNs out) and the host detect nothing.
    @Test func aScanIsDetectedInTheNamespaceScanned() throws {
        let lab = try NetnsLab()
        defer { lab.destroy() }
        let server = try lab.startServer(["tcp:0.0.0.0:0"], in: lab.server)
        let open = server.ports[0]
        let run = try startPortwatchWhenReady(["top", "--json", "--all-namespaces", "--capture", "--interval", "500ms",
                                               "--iterations", "120"])
        defer { run.child.kill() }
        let low = open > 20 ? open - 20 : 1
        let scan = lab.exec(lab.client, [TestEnv.which("nmap")!, "-sS", "-Pn", "-n", "-T5", "--max-retries", "1",
                                         "--host-timeout", "60s", "-p", "\(low)-\(low + 40)", lab.serverV4], timeout: 90)
        #expect(scan.status == 0, "nmap: \(scan.stderr)")
        var events: [[String: Any]] = []
        var extra = -1
        let deadline = monotonic() + 60
        while extra < 4, monotonic() < deadline, let line = run.child.readLine(timeout: max(0.1, deadline - monotonic())) {
            let doc = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "\(line)")
            events += doc.objects("security_events")
            if extra >= 0 { extra += 1 } else if events.contains(where: {
                $0.string("kind") == "scan_detected" && $0.object("namespace")?.string("name") == lab.server
            }) { extra = 0 }
        }
        // Other tests' namespaces are watched too (and may be scanned meanwhile): only this
        // lab's scanner is ours.
        let scans = events.filter {
            $0.string("kind") == "scan_detected" && $0.string("phase") == "started" && $0.string("source") == lab.clientV4
        }
        #expect(scans.count == 1, "\(events)")
        #expect(scans.first?.string("source") == lab.clientV4)
        #expect(scans.first?.object("namespace")?.string("name") == lab.server, "\(scans)")
        #expect(!events.contains { $0.object("namespace")?.string("name") == lab.client }, "\(events)")
    }
}

@Suite("namespaces: the daemon's detections per namespace", .blocking, .serialized,
       .enabled(if: TestEnv.isRoot && TestEnv.canCreateNamespaces && TestEnv.which("nmap") != nil,
                "needs root, ip, nft, python3 and nmap"))
struct NamespaceDaemonDetectionTests {
    /// The daemon on the host with `capture: true`, the port-scan detector and
    /// `namespaces: [client, server]`: one namespace scanning the other is one `scan_detected`
    /// event with the scanned namespace's `netns`, and it is counted in `/metrics`.
    @Test func daemonDetectsAScanInTheNamespaceScanned() throws {
        let lab = try NetnsLab()
        defer { lab.destroy() }
        _ = try lab.startServer(["tcp:0.0.0.0:0"], in: lab.server)
        let dir = try makeTemporaryDirectory("netns-detect")
        defer { removeTree(dir) }
        let config = dir + "/portwatch.yml"
        try """
            interval: 300ms
            capture: true
            namespaces: [\(lab.client), \(lab.server)]
            detectors:
              port_scan: {ports: 15, window: 3s}
            """.write(toFile: config, atomically: true, encoding: .utf8)
        let daemon = try LiveDaemon(["--config", config], directory: dir)
        defer { daemon.stop() }
        // Both namespaces are sampled (their first sample is their baseline) before the scan.
        let joined = daemon.within(samples: 40) { () -> Bool? in
            let text = daemon.get("/metrics")?.body ?? ""
            return text.split(separator: "\n").contains {
                $0.hasPrefix("portwatch_port_listening{") && $0.contains("netns=\"\(lab.server)\"")
            } ? true : nil
        }
        try #require(joined == true, "the server namespace was not sampled: \(daemon.log.text.suffix(2000))")
        _ = daemon.within(samples: 2) { () -> Bool? in nil }
        let scan = lab.exec(lab.client, [TestEnv.which("nmap")!, "-sS", "-Pn", "-n", "-T5", "--max-retries", "1",
                                         "--host-timeout", "60s", "-p", "20000-20040", lab.serverV4], timeout: 90)
        #expect(scan.status == 0, "nmap: \(scan.stderr)")
        // The lab's scanner only: the daemon's own namespace is captured too.
        func ours(_ events: [[String: Any]]) -> [[String: Any]] {
            events.filter {
                $0.string("kind") == "scan_detected" && $0.string("phase") == "started" && $0.string("source") == lab.clientV4
            }
        }
        let scans = daemon.within(samples: 40) { () -> [[String: Any]]? in
            let found = ours(daemon.get("/api/v1/events?since=1h")?.json?.objects("events") ?? [])
            return found.isEmpty ? nil : found
        } ?? []
        _ = daemon.within(samples: 3) { () -> Bool? in nil }
        let all = ours(daemon.get("/api/v1/events?since=1h")?.json?.objects("events") ?? [])
        #expect(scans.count == 1 && all.count == 1, "\(all); \(daemon.log.text.suffix(2000))")
        #expect(all.first?.string("netns") == lab.server, "\(all)")
        #expect(all.first?.string("source") == lab.clientV4)
        #expect(all.first?.string("message")?.hasPrefix("\(lab.server): ") == true, "\(all)")
        let metrics = daemon.get("/metrics")?.body ?? ""
        #expect(metrics.contains("portwatch_scan_detected_total{kind=\"syn\"} 1"), "\(metrics.prefix(3000))")
    }
}

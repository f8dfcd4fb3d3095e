import ArgumentParser
import PortwatchCore
import PortwatchMonitor
#if canImport(Glibc)
import Glibc
#endif

/// `portwatch-bench metrics-scrape`: the cost of one `/metrics` scrape with N listening ports.
///
/// Opens `--ports` TCP listeners on 127.0.0.1 (each with one established connection that carries
/// a little traffic), takes two real snapshots with PortwatchCore, and times `--scrapes` scrapes:
/// each applies a new sample to `PortMetrics` (gauges set, window added to the counters) and
/// renders the exposition text, which is the work the daemon does per scrape at most.
/// Prints its figures as one JSON object.
struct MetricsScrape: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "metrics-scrape", abstract: "Time /metrics scrapes over N real loopback listeners.")

    @Option(help: "Listening ports to open.") var ports = 200
    @Option(help: "Scrapes to time.") var scrapes = 200

    func validate() throws {
        guard (1...5000).contains(ports) else { throw ValidationError("--ports must be 1...5000") }
        guard (1...100_000).contains(scrapes) else { throw ValidationError("--scrapes must be 1...100000") }
    }

    func run() throws {
        var fds: [Int32] = []
        defer { for fd in fds { close(fd) } }
        for _ in 0..<ports {
            let (listener, client, server) = try openConnectedListener()
            fds += [listener, client, server]
            var byte: UInt8 = 0x61
            _ = write(client, &byte, 1)
            _ = read(server, &byte, 1)
        }
        let options = SnapshotOptions(query: SocketQuery(), includeOutgoing: false, processes: .owners)
        var tracker = TrafficTracker()
        let first = try PortSnapshot.take(options)
        tracker.start(first, system: SystemCounters.read())
        for i in stride(from: 0, to: fds.count, by: 3) {
            var byte: UInt8 = 0x62
            _ = write(fds[i + 1], &byte, 1)
            _ = read(fds[i + 2], &byte, 1)
        }
        var snapshot = try PortSnapshot.take(options)
        let report = tracker.advance(snapshot, destroyed: nil, system: SystemCounters.read())

        let metrics = PortMetrics()
        // Wall time, and this thread's CPU time: on a loaded machine the two differ by the time
        // the scheduler kept the thread waiting.
        var wall: [Double] = []
        var cpu: [Double] = []
        var bytes = 0
        for _ in 0..<scrapes {
            snapshot.takenAt += 5
            let latest = LatestSample(snapshot: snapshot, report: report, samples: [])
            let (w0, c0) = (now(CLOCK_MONOTONIC), now(CLOCK_THREAD_CPUTIME_ID))
            metrics.update(latest, configuredPorts: [])
            bytes = metrics.render().count
            wall.append((now(CLOCK_MONOTONIC) - w0) * 1000)
            cpu.append((now(CLOCK_THREAD_CPUTIME_ID) - c0) * 1000)
        }
        wall.sort()
        cpu.sort()
        func at(_ v: [Double], _ q: Double) -> String {
            String((v[min(v.count - 1, Int(Double(v.count) * q))] * 1000).rounded() / 1000)
        }
        print("""
            {"ports":\(ports),"labelled_ports":\(metrics.labelledPortSet.count),"host_ports":\(snapshot.ports.count),\
            "scrapes":\(scrapes),"bytes":\(bytes),"median_ms":\(at(wall, 0.5)),"p95_ms":\(at(wall, 0.95)),\
            "max_ms":\(at(wall, 1)),"cpu_median_ms":\(at(cpu, 0.5)),"cpu_p95_ms":\(at(cpu, 0.95)),\
            "cpu_max_ms":\(at(cpu, 1)),"target_ms":20}
            """)
    }

    private func now(_ clock: clockid_t) -> Double {
        var ts = timespec()
        clock_gettime(clock, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    /// A listener on 127.0.0.1:0 with one accepted connection: (listener, client, server).
    private func openConnectedListener() throws -> (Int32, Int32, Int32) {
        func fail(_ what: String) -> ValidationError { ValidationError("\(what): \(String(cString: strerror(errno)))") }
        let stream = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        let listener = socket(AF_INET, stream, 0)
        guard listener >= 0 else { throw fail("socket") }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { p in
                bind(listener, p, len) == 0 && listen(listener, 64) == 0 && getsockname(listener, p, &len) == 0
            }
        }
        guard ok else { throw fail("bind/listen") }
        let client = socket(AF_INET, stream, 0)
        guard client >= 0 else { throw fail("socket") }
        let connected = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(client, $0, len) }
        }
        guard connected == 0 else { throw fail("connect") }
        let server = accept(listener, nil, nil)
        guard server >= 0 else { throw fail("accept") }
        return (listener, client, server)
    }
}

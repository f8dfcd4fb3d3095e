import Foundation
import Logging
import PortwatchCore
import PortwatchProbe
@testable import PortwatchMonitor
#if canImport(Glibc)
import Glibc
#endif

/// A TCP listener on 127.0.0.1 that a test closes and opens again on the same port, so a probe
/// sees the target go away and come back. The port is below the ephemeral range (32768+), where
/// no client's source port can take it while the listener is closed.
final class ReopenableListener: @unchecked Sendable {
    // @unchecked: `fd` is only touched by the test's own task (open/close), never concurrently.
    private(set) var fd: Int32 = -1
    let port: UInt16

    init() throws {
        for _ in 0..<200 {
            let candidate = UInt16.random(in: 20_000..<32_000)
            if let fd = Self.listen(on: candidate) {
                self.fd = fd
                self.port = candidate
                return
            }
        }
        throw LoopbackTestError(description: "no free port below 32000 after 200 tries")
    }

    var target: ProbeTarget { ProbeTarget(text: "127.0.0.1:\(port)", host: "127.0.0.1", port: port) }

    func close() {
        if fd >= 0 { Glibc.close(fd) }
        fd = -1
    }

    func reopen() throws {
        guard fd < 0 else { return }
        guard let fd = Self.listen(on: port) else { throw LoopbackTestError.errno("listen again on \(port)") }
        self.fd = fd
    }

    private static func listen(on port: UInt16) -> Int32? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return nil }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = port.bigEndian
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, Glibc.listen(fd, 64) == 0 else {
            Glibc.close(fd)
            return nil
        }
        return fd
    }

    deinit { close() }
}

/// A loopback server that answers one line: it accepts `connections` connections, reads until a
/// newline and writes `reply` to each, on a thread of its own (which ends after the last one, or
/// when the listener closes).
final class LineServer: Sendable {
    let listener: LoopbackSocket

    init(reply: String, connections: Int = 1) throws {
        let listener = try LoopbackSocket()
        self.listener = listener
        let fd = listener.fd
        let thread = Thread {
            for _ in 0..<connections {
                let client = accept(fd, nil, nil)
                guard client >= 0 else { break }
                var tv = timeval(tv_sec: 5, tv_usec: 0)
                setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
                var buffer = [UInt8](repeating: 0, count: 256)
                var got: [UInt8] = []
                while !got.contains(10) {
                    let n = recv(client, &buffer, buffer.count, 0)
                    if n <= 0 { break }
                    got += buffer[0..<n]
                }
                var bytes = Array(reply.utf8)
                _ = send(client, &bytes, bytes.count, Int32(MSG_NOSIGNAL))
                Glibc.close(client)
            }
        }
        thread.start()
    }

    var target: ProbeTarget {
        ProbeTarget(text: "127.0.0.1:\(listener.port)", host: "127.0.0.1", port: listener.port)
    }
}

/// Collects what the probe pipeline produces, for tests to wait on.
actor ProbeRecorder {
    private(set) var events: [MonitorEvent] = []
    private(set) var alerts: [Alert] = []
    private(set) var results: [ProbeResult] = []

    func add(events: [MonitorEvent], alerts: [Alert]) {
        self.events += events
        self.alerts += alerts
    }

    func add(_ result: ProbeResult) { results.append(result) }

    /// Waits until `condition` holds over what was recorded, checking every 20 ms, for at most
    /// `seconds` (a bound on a condition, not a delay standing in for one).
    func waitUntil(within seconds: Double = 300, _ condition: @Sendable (ProbeRecorder) async -> Bool) async -> Bool {
        let deadline = ContinuousClock.now.advanced(by: .seconds(seconds))
        while ContinuousClock.now < deadline {
            if await condition(self) { return true }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return await condition(self)
    }

    func count(_ kind: EventKind) -> Int { events.filter { $0.kind == kind }.count }
}

/// A probe config for tests: a short interval, a short timeout.
func testProbe(_ target: ProbeTarget, name: String? = nil, interval: Duration = .milliseconds(150)) -> ProbeConfig {
    var options = ProbeConfig.defaultOptions
    options.timeout = 1
    return ProbeConfig(target: target, name: name, interval: interval, options: options)
}

/// The daemon's probe pipeline around a recorder: live state, rules (with `rules`), results.
struct ProbePipeline {
    let state: MonitorState
    let rules: RuleSink
    let recorder = ProbeRecorder()
    let service: ProbeService

    init(probes: [ProbeConfig], rules ruleConfigs: [RuleConfig] = [], prober: any Prober = NetworkProber()) async {
        var config = MonitorConfig()
        config.probes = probes
        config.rules = ruleConfigs
        let state = MonitorState(interval: .seconds(5), history: InMemoryHistory())
        await state.setProbes(probes)
        let recorder = self.recorder
        let rules = RuleSink(engine: RuleEngine(config: config, instance: "test", everListened: [], firstStart: true),
                             state: state,
                             outputs: RuleOutputs(record: { _, events, alerts in await recorder.add(events: events, alerts: alerts) },
                                                  notify: { _ in }))
        self.state = state
        self.rules = rules
        service = ProbeService(probes: probes, prober: prober, logger: Logger(label: "portwatch.probe.test")) { result in
            await state.recordProbe(result)
            await rules.consume(probe: result)
            await recorder.add(result)
        }
    }
}

/// A loopback listener whose accept queue is full: the kernel drops further SYNs, so a connect to
/// it waits for its timeout (what a dropping firewall does to a probe).
final class SaturatedListener: Sendable {
    let listener: LoopbackSocket
    private let clients: [Int32]

    init() throws {
        listener = try LoopbackSocket(.tcp, listen: 0)
        var clients: [Int32] = []
        // Backlog 0 holds one connection; a few more make sure the queue is full.
        for _ in 0..<4 {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { throw LoopbackTestError.errno("socket") }
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_addr.s_addr = inet_addr("127.0.0.1")
            addr.sin_port = listener.port.bigEndian
            _ = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            clients.append(fd)
        }
        self.clients = clients
    }

    var target: ProbeTarget { ProbeTarget(text: "127.0.0.1:\(listener.port)", host: "127.0.0.1", port: listener.port) }

    func close() { for fd in clients { Glibc.close(fd) } }
}

/// The real `ConnectProber`, announcing each probe as it starts (so a test knows one is in flight).
struct AnnouncingProber: Prober {
    let started: AsyncStream<Void>.Continuation

    func probe(_ target: ProbeTarget, options: ProbeOptions) async -> ProbeResult {
        started.yield()
        return await NetworkProber().probe(target, options: options)
    }
}

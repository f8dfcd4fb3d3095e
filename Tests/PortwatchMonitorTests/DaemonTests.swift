import Foundation
import Logging
import PortwatchCore
@testable import PortwatchMonitor
import ServiceLifecycle
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

// MARK: - Loopback sockets held by the test

/// A socket of the test's own; closed when released.
private final class Sock: @unchecked Sendable {
    let fd: Int32
    init(_ fd: Int32) { self.fd = fd }
    deinit { Glibc.close(fd) }

    var port: UInt16 {
        var sin = sockaddr_in()
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &sin) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        return UInt16(bigEndian: sin.sin_port)
    }

    static func address(_ port: UInt16) -> sockaddr_in {
        var sin = sockaddr_in()
        sin.sin_family = sa_family_t(AF_INET)
        sin.sin_port = port.bigEndian
        sin.sin_addr.s_addr = inet_addr("127.0.0.1")
        return sin
    }

    /// A TCP listener on 127.0.0.1:port.
    static func listen(_ port: UInt16, backlog: Int32 = 64) throws -> Sock {
        let s = Sock(socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0))
        var sin = address(port)
        let rc = withUnsafePointer(to: &sin) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(s.fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard s.fd >= 0, rc == 0, Glibc.listen(s.fd, backlog) == 0 else { throw POSIXError(.EADDRINUSE) }
        return s
    }

    /// A client connected to 127.0.0.1:port (blocking connect: the handshake is done on return).
    static func connect(_ port: UInt16) throws -> Sock {
        let s = Sock(socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0))
        var sin = address(port)
        let rc = withUnsafePointer(to: &sin) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(s.fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard rc == 0 else { throw POSIXError(.ECONNREFUSED) }
        return s
    }

    func accept() throws -> Sock {
        let c = Glibc.accept(fd, nil, nil)
        guard c >= 0 else { throw POSIXError(.EBADF) }
        return Sock(c)
    }

    func sendAll(_ count: Int) throws {
        let bytes = [UInt8](repeating: 0x5a, count: count)
        var sent = 0
        for _ in 0..<10_000 where sent < count {
            let n = bytes[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw POSIXError(.EPIPE) }
            sent += n
        }
    }

    /// Reads exactly `count` bytes (blocking), so the kernel has counted them as received.
    func receive(_ count: Int) throws {
        var buffer = [UInt8](repeating: 0, count: 65536)
        var got = 0
        for _ in 0..<10_000 where got < count {
            let n = recv(fd, &buffer, min(buffer.count, count - got), 0)
            guard n > 0 else { throw POSIXError(.ECONNRESET) }
            got += n
        }
    }
}

/// A UDP socket on 127.0.0.1:port; with `connectTo`, connected to that port (a client).
private func udpSocket(bind port: UInt16, connectTo peer: UInt16? = nil) throws -> Sock {
    let s = Sock(socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0))
    var sin = Sock.address(port)
    let rc = withUnsafePointer(to: &sin) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(s.fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
    guard s.fd >= 0, rc == 0 else { throw POSIXError(.EADDRINUSE) }
    if let peer {
        var to = Sock.address(peer)
        let c = withUnsafePointer(to: &to) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(s.fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard c == 0 else { throw POSIXError(.ECONNREFUSED) }
    }
    return s
}

/// A port below the ephemeral range that nothing holds now (bindable on both wildcards, in no
/// socket of a fresh snapshot), so counts on it are the test's alone.
private func freePort() throws -> UInt16 {
    let inUse = Set(try PortSnapshot.take(SnapshotOptions(processes: .none)).sockets.map(\.local.port))
    for _ in 0..<200 {
        let port = UInt16.random(in: 20000...32000)
        if !inUse.contains(port) && canBind(port: port, proto: .tcp) { return port }
    }
    throw POSIXError(.EADDRINUSE)
}

/// A listener on a free port (retried if someone takes the port first).
private func freeListener() throws -> Sock {
    for _ in 0..<5 {
        if let s = try? Sock.listen(try freePort()) { return s }
    }
    throw POSIXError(.EADDRINUSE)
}

/// A value shared with escaping closures (a `Mutex` alone cannot be captured by them).
private final class Shared<Value: Sendable>: Sendable {
    private let value: Mutex<Value>
    init(_ value: Value) { self.value = Mutex(value) }
    func get() -> Value { value.withLock { $0 } }
    func set(_ v: Value) { value.withLock { $0 = v } }
    func update(_ f: (inout Value) -> Void) { value.withLock { f(&$0) } }
}

private let quietLogger: Logger = {
    var l = Logger(label: "portwatch.test", factory: { _ in SwiftLogNoOpLogHandler() })
    l.logLevel = .critical
    return l
}()

// MARK: - PortSample.rows on real sockets

@Suite(.serialized) struct PortRowsTests {
    @Test func aListenerWithConnectionsIsOneRowWithExactWindowBytes() throws {
        let listener = try freeListener()
        let port = listener.port
        let clients = try (0..<3).map { _ in try Sock.connect(port) }
        let served = try clients.map { _ in try listener.accept() }
        let unused = try freePort()
        let configured: Set<MonitoredPort> = [MonitoredPort(proto: .tcp, port: unused)]

        let sampler = try Sampler(options: SnapshotOptions(processes: .owners), closedConnections: false)
        let baseline = try sampler.start()
        let first = PortSample.rows(snapshot: baseline, report: nil, configured: configured)
        #expect(first.first { $0.port == port }?.windowSeconds == 0)

        // A known transfer inside the window, each byte read by the server before the sample.
        try clients[0].sendAll(12_345)
        try served[0].receive(12_345)
        try served[1].sendAll(777)
        try clients[1].receive(777)
        let (snapshot, report) = try sampler.sample()
        let rows = PortSample.rows(snapshot: snapshot, report: report, configured: configured)

        let row = try #require(rows.first { $0.proto == .tcp && $0.port == port })
        #expect(row.listening)
        #expect(row.addresses == ["127.0.0.1"])
        #expect(row.connections.established == 3)
        #expect(row.connections.total == 3)
        #expect(row.acceptQueue == 0)
        #expect(row.acceptQueueMax == 64)
        #expect(row.bytesReceived == 12_345)
        #expect(row.bytesSent == 777)
        #expect(row.windowSeconds == report.seconds)
        #expect(row.windowSeconds > 0)
        #expect(row.time == snapshot.takenAt)
        // Our own process holds the sockets: attribution needs no privilege for it.
        #expect(row.owners.contains { $0.hasSuffix("[\(getpid())]") })
        #expect(!row.executables.isEmpty)

        // The clients' ephemeral ports are not rows (their sockets are on the server's row).
        for c in clients { #expect(!rows.contains { $0.port == c.port }) }
        // A configured port that nothing uses has a row of zeros.
        let idle = try #require(rows.first { $0.port == unused })
        #expect(!idle.listening && idle.connections.total == 0 && idle.bytesReceived == 0)
        #expect(rows == rows.sorted { $0.key < $1.key })
        _ = served
    }

    @Test func ownersExecutablesComeFromTheCommandLine() {
        let p = [ProcessRecord(pid: 1, name: "nginx", command: "/usr/sbin/nginx -g daemon off;"),
                 ProcessRecord(pid: 2, name: "nginx", command: "/usr/sbin/nginx -g daemon off;"),
                 ProcessRecord(pid: 3, name: "kworker", command: "")]
        #expect(PortSample.executables(of: p) == ["/usr/sbin/nginx", "kworker"])
    }
}

// MARK: - The sampler service and the live state

/// Records what a sink saw, and can hold a consume open to observe shutdown.
private actor Recorder: SampleSink {
    var samples: [LatestSample] = []
    func consume(_ latest: LatestSample) { samples.append(latest) }
    func count() -> Int { samples.count }
}

/// Polls `condition` every 20 ms, at most `tries` times.
private func eventually(tries: Int = 500, _ condition: () async -> Bool) async -> Bool {
    for _ in 0..<tries {
        if await condition() { return true }
        try? await Task.sleep(for: .milliseconds(20))
    }
    return false
}

@Suite(.serialized) struct SamplerServiceTests {
    @Test func aNewListenerReachesTheStateWithinTwoSamples() async throws {
        let state = MonitorState(interval: .milliseconds(100), history: InMemoryHistory())
        let recorder = Recorder()
        let service = SamplerService(settings: SamplingSettings(interval: .milliseconds(100)),
                                     sinks: [state, recorder], logger: quietLogger)
        let stream = state.subscribe()
        let group = ServiceGroup(services: [service], logger: quietLogger)
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            #expect(await eventually { await state.latest() != nil })
            let baseline = try #require(await state.latest())
            #expect(baseline.report == nil)

            let port = try freePort()
            let before = await recorder.count()
            let listener = try Sock.listen(port)
            #expect(await eventually { await state.latest()?.samples.contains { $0.port == listener.port && $0.listening } == true })
            // Sample `before` may have read the kernel before the listen(); the one after it must show it.
            let firstSeen = await recorder.samples.firstIndex { $0.samples.contains { $0.port == port && $0.listening } }
            #expect(firstSeen != nil && firstSeen! <= before + 1, "first seen in sample \(String(describing: firstSeen)), listen() after \(before)")
            let latest = try #require(await state.latest())
            #expect(latest.report != nil)

            // Subscribers get the samples.
            var iterator = stream.makeAsyncIterator()
            var sampled = false
            if case .sample(let streamed)? = await iterator.next() {
                sampled = true
                // Rows and ports go out; the socket list stays home.
                #expect(!streamed.samples.isEmpty && !streamed.snapshot.ports.isEmpty)
                #expect(streamed.snapshot.sockets.isEmpty)
            }
            #expect(sampled)
            #expect(await state.latest()?.snapshot.sockets.isEmpty == false)

            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
    }

    @Test func gracefulShutdownLetsTheSampleInProgressFinish() async throws {
        let entered = AsyncStream.makeStream(of: Void.self)
        let release = AsyncStream.makeStream(of: Void.self)
        let finished = Shared(0)
        let started = Shared(0)
        let interrupted = Shared(false)
        let slow = ClosureSink { _ in
            started.update { $0 += 1 }
            entered.continuation.yield()
            for await _ in release.stream { break }
            if Task.isCancelled { interrupted.set(true) }
            finished.update { $0 += 1 }
        }
        let service = SamplerService(settings: SamplingSettings(interval: .milliseconds(50)), sinks: [slow], logger: quietLogger)
        let group = ServiceGroup(services: [service], logger: quietLogger)
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            for await _ in entered.stream { break }
            // Shutdown arrives while a sink is still writing: the write completes, no new sample starts.
            await group.triggerGracefulShutdown()
            release.continuation.yield()
            try await tasks.waitForAll()
        }
        #expect(started.get() == 1)
        #expect(finished.get() == 1)
        #expect(!interrupted.get(), "the write in progress was cancelled")
    }
}

extension SamplerServiceTests {
    @Test(.enabled(if: geteuid() == 0, "packet capture needs root or CAP_NET_RAW"))
    func withCaptureUDPTrafficReachesItsRow() async throws {
        var server: Sock? = nil
        for _ in 0..<5 where server == nil {
            let port = try freePort()
            if canBind(port: port, proto: .udp) { server = try? udpSocket(bind: port) }
        }
        let bound = try #require(server)
        let client = try udpSocket(bind: 0, connectTo: bound.port)
        let recorder = Recorder()
        let service = SamplerService(settings: SamplingSettings(interval: .milliseconds(100), capture: true),
                                     sinks: [recorder], logger: quietLogger)
        let group = ServiceGroup(services: [service], logger: quietLogger)
        func received() async -> (bytes: UInt64, packets: UInt64) {
            var bytes: UInt64 = 0, packets: UInt64 = 0
            for sample in await recorder.samples where sample.report != nil {
                for row in sample.samples where row.proto == .udp && row.port == bound.port {
                    bytes += row.bytesReceived
                    packets += row.packetsReceived
                }
            }
            return (bytes, packets)
        }
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            #expect(await eventually { await recorder.count() >= 1 })
            for _ in 0..<10 { try client.sendAll(100) }
            #expect(await eventually { await received() == (1000, 10) })
            #expect(await received() == (1000, 10))
            // The client's port is no row: connected, in the ephemeral range.
            let rows = await recorder.samples.flatMap(\.samples)
            #expect(!rows.contains { $0.proto == .udp && $0.port == client.port })
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
    }
}

@Suite struct MonitorStateTests {
    @Test func aSlowSubscriberKeepsOnlyTheNewestMessages() async {
        let state = MonitorState(interval: .seconds(5), history: InMemoryHistory(), streamBuffer: 4)
        let stream = state.subscribe()
        #expect(state.stream.count == 1)
        await state.publish((0..<10).map { MonitorEvent(time: Double($0), kind: .listenerStarted, message: "\($0)") })
        #expect(state.stream.dropped == 6)
        var times: [Double] = []
        var iterator = stream.makeAsyncIterator()
        for _ in 0..<4 {
            if case .event(let e)? = await iterator.next() { times.append(e.time) }
        }
        #expect(times == [6, 7, 8, 9])
        state.stream.finishAll()
        let end = await iterator.next()
        #expect(end == nil)
        #expect(state.stream.count == 0)
    }

    @Test func alertsAndHistoryComeThroughTheState() async throws {
        let history = InMemoryHistory(samplesPerPort: 3)
        let state = MonitorState(interval: .seconds(1), history: history)
        let port = MonitoredPort(proto: .tcp, port: 8080)
        for t in 0..<5 {
            await history.write(samples: [PortSample(time: Double(t), proto: .tcp, port: 8080, listening: t == 1,
                                                     windowSeconds: 1, bytesReceived: 100)],
                                events: [MonitorEvent(time: Double(t), kind: .listenerStarted, proto: .tcp, port: t % 2 == 0 ? 8080 : 9090, message: "")])
        }
        let raw = try await state.history(port, since: 0, step: nil)
        #expect(raw.samples.map(\.time) == [2, 3, 4])  // the ring kept the newest three
        let rolled = try await state.history(port, since: 0, step: 10)
        #expect(rolled.samples.count == 1)
        #expect(rolled.samples[0].bytesReceived == 300 && rolled.samples[0].windowSeconds == 3)
        #expect(try await state.events(since: 1, port: 8080, limit: 10).map(\.time) == [2, 4])
        #expect(await history.everListened() == [port])

        let firing = Alert(rule: "r", state: .firing, severity: "warning", proto: .tcp, port: 8080, metric: "connections",
                           value: 1, threshold: 0, since: 0, message: "", instance: "h")
        var resolved = firing
        resolved.state = .resolved
        resolved.port = 9090
        await state.setAlerts([firing, resolved])
        #expect(await state.alerts() == [firing])
        state.setInterval(.seconds(7))
        #expect(state.interval == .seconds(7))
    }
}

// MARK: - Composition: reload and start checks

@Suite struct DaemonCompositionTests {
    @Test func anInvalidConfigOnReloadKeepsTheRunningOne() async {
        var start = MonitorConfig()
        start.interval = .seconds(2)
        let next = Shared<Result<MonitorConfig, PortwatchError>>(.failure(.usage("x.yml: interval: bad")))
        let daemon = Daemon(config: start, sinks: [], reload: { try next.get().get() }, logger: quietLogger)
        #expect(await daemon.reload() == false)
        #expect(daemon.config == start)
        #expect(daemon.sampler.currentSettings.interval == .seconds(2))

        // A config that loads but must not run (non-loopback without a token) is refused too.
        var open = start
        open.listen = ListenAddress(host: "0.0.0.0", port: 9910)
        next.set(.success(open))
        #expect(await daemon.reload() == false)
        #expect(daemon.config == start)

        var faster = start
        faster.interval = .milliseconds(500)
        faster.ports = [PortExpectation(port: 23, expect: .closed)]
        next.set(.success(faster))
        #expect(await daemon.reload() == true)
        #expect(daemon.config == faster)
        #expect(daemon.sampler.currentSettings == SamplingSettings(interval: .milliseconds(500), configured: [MonitoredPort(proto: .tcp, port: 23)]))
    }

    @Test func flagsOverrideTheConfig() {
        var file = MonitorConfig()
        file.interval = .seconds(10)
        file.tokenFile = "/etc/t"
        let flags = DaemonOverrides(database: "/tmp/h.sqlite", listen: ListenAddress(host: "::1", port: 1), interval: .seconds(1))
        let c = flags.applied(to: file)
        #expect(c.interval == .seconds(1) && c.database.path == "/tmp/h.sqlite" && c.listen.host == "::1" && c.tokenFile == "/etc/t")
    }

    @Test(arguments: [
        ("127.0.0.1:9910", "127.0.0.1", 9910), ("[::1]:80", "::1", 80), ("localhost:1", "localhost", 1),
        ("0.0.0.0:65535", "0.0.0.0", 65535),
    ] as [(String, String, Int)])
    func listenAddressesParse(text: String, host: String, port: Int) throws {
        #expect(try ListenAddress(parsing: text) == ListenAddress(host: host, port: UInt16(port)))
    }

    @Test(arguments: ["", "9910", "127.0.0.1", "127.0.0.1:", ":9910", "127.0.0.1:99999", "::1:80", "[::1]80", "[127.0.0.1]:1", "a b:1", "h:+1"])
    func badListenAddressesAreRejected(text: String) {
        #expect(throws: PortwatchError.self) { try ListenAddress(parsing: text) }
    }

    @Test func theDaemonRefusesToServeBeyondLoopbackWithoutAToken() throws {
        var c = MonitorConfig()
        #expect(throws: Never.self) { try c.checkStartable() }
        c.listen = ListenAddress(host: "0.0.0.0", port: 9910)
        #expect(throws: PortwatchError.self) { try c.checkStartable() }
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("pw-token-\(getpid())").path
        defer { unlink(path) }
        #expect(FileManager.default.createFile(atPath: path, contents: Data("secret\n".utf8)))
        c.tokenFile = path
        #expect(throws: Never.self) { try c.checkStartable() }
        c.interval = .milliseconds(10)
        #expect(throws: PortwatchError.self) { try c.checkStartable() }
    }
}

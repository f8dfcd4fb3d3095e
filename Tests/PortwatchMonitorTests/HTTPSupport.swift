// Helpers for the HTTP, metrics and dashboard tests: real loopback sockets, a real sample of
// them taken with PortwatchCore, and a MonitorDataSource that serves that sample.
//
// Ports come from the kernel (bind to port 0); every socket is closed by its owner's deinit.

import Foundation
import PortwatchCore
@testable import PortwatchMonitor
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

struct LoopbackTestError: Error, CustomStringConvertible {
    var description: String
    static func errno(_ what: String) -> LoopbackTestError {
        LoopbackTestError(description: "\(what): \(String(cString: strerror(Glibc.errno)))")
    }
}

/// A socket bound to 127.0.0.1 on a port the kernel picks (TCP listening, or UDP bound).
final class LoopbackSocket: Sendable {
    let fd: Int32
    let port: UInt16

    init(_ proto: TransportProtocol = .tcp, listen backlog: Int32 = 16) throws {
        let type = proto == .tcp ? Int32(SOCK_STREAM.rawValue) : Int32(SOCK_DGRAM.rawValue)
        let fd = socket(AF_INET, type | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw LoopbackTestError.errno("socket") }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0 else { close(fd); throw LoopbackTestError.errno("bind") }
        if proto == .tcp {
            guard Glibc.listen(fd, backlog) == 0 else { close(fd); throw LoopbackTestError.errno("listen") }
        }
        self.fd = fd
        port = boundPort(fd)
    }

    /// Connects a client to this listener and accepts it; returns (client fd, server fd).
    func connectPair() throws -> (client: Int32, server: Int32) {
        let client = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard client >= 0 else { throw LoopbackTestError.errno("socket") }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = port.bigEndian
        let connected = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(client, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { close(client); throw LoopbackTestError.errno("connect") }
        let server = accept(fd, nil, nil)
        guard server >= 0 else { close(client); throw LoopbackTestError.errno("accept") }
        return (client, server)
    }

    deinit { close(fd) }
}

func boundPort(_ fd: Int32) -> UInt16 {
    var addr = sockaddr_in()
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
    }
    return UInt16(bigEndian: addr.sin_port)
}

/// Writes all of `bytes` to `fd` and reads the same count from `peer` (bounded: loopback buffers
/// hold far more than the tests send).
func exchangeBytes(_ bytes: Int, from fd: Int32, to peer: Int32) throws {
    let payload = [UInt8](repeating: 0x61, count: bytes)
    var sent = 0
    while sent < bytes {
        let n = payload[sent...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        guard n > 0 else { throw LoopbackTestError.errno("write") }
        sent += n
    }
    var buffer = [UInt8](repeating: 0, count: bytes)
    var got = 0
    for _ in 0..<10_000 where got < bytes {
        let n = buffer.withUnsafeMutableBytes { read(peer, $0.baseAddress! + got, bytes - got) }
        guard n > 0 else { throw LoopbackTestError.errno("read") }
        got += n
    }
}

/// The monitor's rows for a snapshot and its window (what the daemon's sampler hands out).
func samplesOfSnapshot(_ snapshot: PortSnapshot, _ report: WindowReport?) -> [PortSample] {
    snapshot.ports.filter { $0.role == .local }.map { row in
        let a = report?.activity(PortKey(role: .local, proto: row.proto, port: row.port)) ?? PortActivity()
        return PortSample(
            time: snapshot.takenAt, proto: row.proto, port: row.port, listening: row.listening, addresses: row.addresses,
            connections: row.connections, acceptQueue: row.acceptQueue?.current, acceptQueueMax: row.acceptQueue?.max,
            windowSeconds: report?.seconds ?? 0, bytesReceived: a.traffic.bytesReceived, bytesSent: a.traffic.bytesSent,
            packetsReceived: a.traffic.packetsReceived, packetsSent: a.traffic.packetsSent, connectionsOpened: a.opened,
            connectionsClosed: a.closed, listenDrops: a.listenDrops, drops: a.traffic.drops, retransmits: a.traffic.retransmits,
            connectTimeouts: a.connectTimeouts, connectRefused: a.connectRefused,
            owners: row.processes.map { "\($0.name)[\($0.pid)]" })
    }
}

/// Real samples of this host taken with PortwatchCore: a baseline and a window.
struct LoopbackSampler {
    var tracker = TrafficTracker()

    static let options = SnapshotOptions(query: SocketQuery(), includeOutgoing: false, processes: .owners)

    /// One baseline sample of the host as it is now.
    static func once() throws -> LatestSample {
        var sampler = LoopbackSampler()
        return try sampler.start()
    }

    mutating func start() throws -> LatestSample {
        let snapshot = try PortSnapshot.take(Self.options)
        tracker.start(snapshot, system: SystemCounters.read())
        return LatestSample(snapshot: snapshot, report: nil, samples: samplesOfSnapshot(snapshot, nil))
    }

    mutating func next() throws -> LatestSample {
        let snapshot = try PortSnapshot.take(Self.options)
        let report = tracker.advance(snapshot, destroyed: nil, system: SystemCounters.read())
        return LatestSample(snapshot: snapshot, report: report, samples: samplesOfSnapshot(snapshot, report))
    }
}

/// A listener with one established connection that carried traffic in the sampled window.
struct BusyListener {
    let listener: LoopbackSocket
    let client: Int32
    let server: Int32
    /// The window that saw 3000 bytes in and 1000 out.
    let latest: LatestSample

    init() throws {
        listener = try LoopbackSocket()
        (client, server) = try listener.connectPair()
        var sampler = LoopbackSampler()
        _ = try sampler.start()
        try exchangeBytes(3000, from: client, to: server)
        try exchangeBytes(1000, from: server, to: client)
        latest = try sampler.next()
    }

    var key: MonitoredPort { MonitoredPort(proto: .tcp, port: listener.port) }

    func close() {
        Glibc.close(client)
        Glibc.close(server)
    }
}

/// A MonitorDataSource over fixed values; records what the API asked of it.
final class FakeMonitorSource: MonitorDataSource {
    let interval: Duration
    let sample: LatestSample?
    let storedEvents: [MonitorEvent]
    let storedAlerts: [Alert]
    /// Whether `subscribe` ends after its two messages (router tests) or stays open (live page).
    let endStreams: Bool
    /// Thrown by `history` and `events`, standing for a store that fails (a corrupt file, a full disk).
    let storeError: PortwatchError?
    let historyCalls = Mutex<[(MonitoredPort, Double, Double?)]>([])
    let eventCalls = Mutex<[(Double, UInt16?, Int)]>([])

    init(sample: LatestSample?, interval: Duration = .seconds(5), events: [MonitorEvent] = [], alerts: [Alert] = [],
         endStreams: Bool = true, storeError: PortwatchError? = nil) {
        self.storeError = storeError
        self.sample = sample
        self.interval = interval
        storedEvents = events
        storedAlerts = alerts
        self.endStreams = endStreams
    }

    func latest() async -> LatestSample? { sample }

    func history(_ port: MonitoredPort, since: Double, step: Double?) async throws -> HistorySeries {
        historyCalls.withLock { $0.append((port, since, step)) }
        if let storeError { throw storeError }
        // A series of twelve steps ending at the sample, with its numbers growing.
        let base = sample?.samples.first { $0.key == port } ?? PortSample(time: 0, proto: port.proto, port: port.port)
        let stepSeconds = step ?? 5
        let end = sample?.snapshot.takenAt ?? 0
        let points = (0..<12).map { i -> PortSample in
            var s = base
            s.time = end - Double(11 - i) * stepSeconds
            s.windowSeconds = stepSeconds
            s.connections.established = i
            s.bytesReceived = UInt64(i * 1000)
            s.bytesSent = UInt64(i * 500)
            s.retransmits = UInt64(i % 3)
            return s
        }
        return HistorySeries(proto: port.proto, port: port.port, stepSeconds: stepSeconds, samples: points)
    }

    func events(since: Double, port: UInt16?, limit: Int) async throws -> [MonitorEvent] {
        eventCalls.withLock { $0.append((since, port, limit)) }
        if let storeError { throw storeError }
        return storedEvents.filter { $0.time >= since && (port == nil || $0.port == port) }.prefix(limit).map { $0 }
    }

    func alerts() async -> [Alert] { storedAlerts }

    func probes() async -> [ProbeStatus] { [] }

    func probeHistory(_ target: String, since: Double) async throws -> ProbeHistory? { nil }

    func subscribe() async -> AsyncStream<StreamMessage> {
        let (stream, feed) = AsyncStream<StreamMessage>.makeStream()
        if let sample { feed.yield(.sample(sample)) }
        if let event = storedEvents.last { feed.yield(.event(event)) }
        if endStreams { feed.finish() }
        return stream
    }
}

/// Parses a response body as a JSON object.
func decodeJSONObject(_ text: String) throws -> [String: Any] {
    let value = try JSONSerialization.jsonObject(with: Data(text.utf8))
    guard let object = value as? [String: Any] else { throw LoopbackTestError(description: "not a JSON object: \(text.prefix(200))") }
    return object
}

/// Runs a program with arguments and optional stdin; returns (status, stdout, stderr). Bounded by
/// `timeout` seconds: the child is killed when it runs longer.
func runTool(_ path: String, _ arguments: [String], stdin: String? = nil, timeout: Double = 60) throws -> (Int32, String, String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: path)
    process.arguments = arguments
    let out = Pipe(), err = Pipe(), input = Pipe()
    process.standardOutput = out
    process.standardError = err
    process.standardInput = input
    try process.run()
    let timer = DispatchWorkItem { if process.isRunning { process.terminate() } }
    DispatchQueue.global().asyncAfter(deadline: .now() + timeout, execute: timer)
    if let stdin { input.fileHandleForWriting.write(Data(stdin.utf8)) }
    try input.fileHandleForWriting.close()
    // Read both pipes before waiting, so a chatty child never blocks on a full pipe.
    let errData = Mutex<Data>(Data())
    let group = DispatchGroup()
    DispatchQueue.global().async(group: group) { errData.withLock { $0 = err.fileHandleForReading.readDataToEndOfFile() } }
    let outData = out.fileHandleForReading.readDataToEndOfFile()
    group.wait()
    process.waitUntilExit()
    timer.cancel()
    return (process.terminationStatus, String(decoding: outData, as: UTF8.self),
            String(decoding: errData.withLock { $0 }, as: UTF8.self))
}

/// The first executable named `name` on PATH (or at one of `extra` paths).
func findTool(_ name: String, extra: [String] = []) -> String? {
    let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
    for dir in path.split(separator: ":").map(String.init) + extra {
        let candidate = dir.hasSuffix(name) ? dir : dir + "/" + name
        if access(candidate, X_OK) == 0 { return candidate }
    }
    return nil
}

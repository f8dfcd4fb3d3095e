#if canImport(Glibc)
import Glibc
#endif

/// Scans `ports` on every target (TCP connect scan, or UDP with `options.udp`) and returns what
/// each port is: open, closed, filtered or open|filtered, with service names and round trips.
/// `progress` is called about ten times a second from the scanning thread. A readable
/// `options.cancelFD` ends the scan early with the ports decided so far (`complete` false).
public func runScan(targets: [ScanTarget], ports: [UInt16], options: ScanOptions,
                    services: ServiceDatabase = .system,
                    progress: ((ScanProgress) -> Void)? = nil) throws(PortwatchError) -> ScanReport {
    if targets.isEmpty { throw usageError("nothing to scan: no targets") }
    if ports.isEmpty { throw usageError("nothing to scan: no ports") }
    if targets.count * ports.count > maxScanProbes {
        throw usageError("too many probes: \(targets.count) hosts × \(ports.count) ports is more than \(maxScanProbes); scan fewer hosts or ports at a time")
    }
    let local = allTargetsLocal(targets)
    let start = scanClock()
    let proto: TransportProtocol = options.udp ? .udp : .tcp
    let book: ScanBook
    let estimators: [RTTEstimator]
    let cancelled: Bool
    var limited: [Bool] = Array(repeating: false, count: targets.count)
    if options.udp {
        var engine = UDPScanEngine(targets: targets, ports: ports, options: options)
        try engine.run(progress: progress)
        (book, estimators, cancelled) = (engine.book, engine.estimators, engine.cancelled)
        limited = engine.rateLimited
    } else if local && ports.count >= 4096 && onlineCPUs() > 1 {
        return try scanLocalInShards(targets: targets, ports: ports, options: options, services: services,
                                     progress: progress, start: start)
    } else {
        var engine = TCPScanEngine(targets: targets, ports: ports, options: options, local: local)
        try engine.run(progress: progress)
        (book, estimators, cancelled) = (engine.book, engine.estimators, engine.cancelled)
    }
    var hosts: [ScanHostResult] = []
    for (h, target) in targets.enumerated() {
        hosts.append(ScanHostResult(host: target.host, address: target.address,
                                    ports: book.results(host: h, proto: proto, services: services),
                                    seconds: book.seconds(host: h), smoothedRTT: estimators[h].srtt,
                                    icmpRateLimited: limited[h]))
    }
    return ScanReport(hosts: hosts, complete: !cancelled && book.isFinished, seconds: scanClock() - start)
}

/// A large TCP scan of this host is bound by the kernel's work per connect (socket lookup,
/// reset, no network in between), so it runs as two engines on two threads, each with every
/// other port; nothing remote is hurried by it.
private func scanLocalInShards(targets: [ScanTarget], ports: [UInt16], options: ScanOptions, services: ServiceDatabase,
                               progress: ((ScanProgress) -> Void)?, start: Double) throws(PortwatchError) -> ScanReport {
    let shards = 2
    var shardOptions = options
    shardOptions.concurrency = max(1, options.concurrency / shards)
    let boxes = (0..<shards).map { i in
        ShardBox(TCPScanEngine(targets: targets, ports: stride(from: i, to: ports.count, by: shards).map { ports[$0] },
                               options: shardOptions, local: true))
    }
    // The second shard runs on its own thread; the first on this one, reporting progress for both
    // (the other's count is read racily through an atomic-free estimate: twice its own).
    let thread = try startThread { boxes[1].run(progress: nil) }
    boxes[0].run(progress: progress.map { report in { p in
        report(ScanProgress(done: min(p.total * 2, p.done * 2), total: ports.count * targets.count, elapsed: p.elapsed, open: p.open))
    } })
    pthread_join(thread, nil)
    for box in boxes { if let error = box.error { throw error } }
    var hosts: [ScanHostResult] = []
    for (h, target) in targets.enumerated() {
        var rows: [ScanPortResult] = []
        var seconds = 0.0
        for box in boxes {
            rows += box.engine.book.results(host: h, proto: .tcp, services: services)
            seconds = max(seconds, box.engine.book.seconds(host: h))
        }
        rows.sort { $0.port < $1.port }
        hosts.append(ScanHostResult(host: target.host, address: target.address, ports: rows, seconds: seconds,
                                    smoothedRTT: boxes[0].engine.estimators[h].srtt))
    }
    let complete = boxes.allSatisfy { !$0.engine.cancelled && $0.engine.book.isFinished }
    return ScanReport(hosts: hosts, complete: complete, seconds: scanClock() - start)
}

/// One shard's engine and outcome. @unchecked Sendable: each box is run by exactly one thread,
/// and read by the starting thread only after pthread_join, which orders the accesses.
private final class ShardBox: @unchecked Sendable {
    var engine: TCPScanEngine
    var error: PortwatchError?

    init(_ engine: TCPScanEngine) { self.engine = engine }

    func run(progress: ((ScanProgress) -> Void)?) {
        do throws(PortwatchError) { try engine.run(progress: progress) } catch { self.error = error }
    }
}

/// The most host × port probes one scan takes (a few bytes of bookkeeping each).
public let maxScanProbes = 16_777_216

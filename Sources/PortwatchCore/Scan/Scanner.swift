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

/// The most host × port probes one scan takes (a few bytes of bookkeeping each).
public let maxScanProbes = 16_777_216

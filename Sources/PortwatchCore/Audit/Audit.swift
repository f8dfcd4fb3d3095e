import Dispatch
import Synchronization

// The audit: every listener of a snapshot with its reach, the firewall's verdict for it, the
// risky services among them, and the drift from a baseline — decided here, rendered by the
// CLI. The inputs that need the system (interfaces, ruleset, executables, banners) are read
// by the caller's collectors and passed in, so the decisions are testable on values.

/// One listener as the audit sees it.
public struct AuditListener: Sendable {
    public var summary: PortSummary
    public var reach: ListenerReach
    /// The verdict for the families it reaches, combined (see `combine`).
    public var firewall: FirewallVerdict
    /// The verdict per address family it reaches.
    public var firewallByFamily: [(PacketFamily, FirewallVerdict)]
    /// Executables of the processes holding it, sorted.
    public var executables: [String]
    /// What the service said on loopback, when it was asked.
    public var banner: String?
    /// The TLS handshake's report, when the listener was tried and speaks TLS.
    public var tls: TLSReport?
    public var findings: [AuditFinding]

    public var key: PortKey { summary.key }

    /// The listener as a baseline records it.
    public var baselineEntry: BaselineListener {
        BaselineListener(proto: summary.proto, port: summary.port, addresses: summary.addresses, executables: executables)
    }
}

/// The whole audit.
public struct AuditReport: Sendable {
    public var listeners: [AuditListener]
    /// Every finding, worst first: risky services, then drift.
    public var findings: [AuditFinding]
    public var drift: Drift?
    /// One line about the firewall (`nftables: 2 tables, ...`, `no firewall loaded`).
    public var firewall: String
    public var notes: [String]

    /// The worst severity among the findings.
    public var worst: Severity? { findings.map(\.severity).max() }

    /// The baseline `--save-baseline` writes.
    public var baseline: Baseline { Baseline(listeners: listeners.map(\.baselineEntry)) }
}

/// Collected facts the audit decides on.
public struct AuditInputs: Sendable {
    public var snapshot: PortSnapshot
    public var interfaces: [InterfaceAddress]
    public var firewall: FirewallState
    /// pid → executable path.
    public var executables: [Int32: String]
    /// Banners read from risky services, by listener.
    public var banners: [PortKey: [UInt8]]
    /// TLS handshake reports, by listener (only those that completed a handshake).
    public var tls: [PortKey: TLSReport]
    public var baseline: (Baseline, source: String)?

    public init(snapshot: PortSnapshot, interfaces: [InterfaceAddress], firewall: FirewallState,
                executables: [Int32: String] = [:], banners: [PortKey: [UInt8]] = [:], tls: [PortKey: TLSReport] = [:],
                baseline: (Baseline, source: String)? = nil) {
        self.snapshot = snapshot
        self.interfaces = interfaces
        self.firewall = firewall
        self.executables = executables
        self.banners = banners
        self.tls = tls
        self.baseline = baseline
    }
}

/// The listeners of a snapshot: local rows with a listening TCP socket or a bound UDP one.
public func auditedRows(_ snapshot: PortSnapshot) -> [PortSummary] {
    snapshot.ports.filter { $0.role == .local && $0.listening }.sorted { $0.key < $1.key }
}

/// Decides the audit from collected facts.
public func buildAudit(_ inputs: AuditInputs) -> AuditReport {
    var listeners: [AuditListener] = []
    var findings: [AuditFinding] = []
    for row in auditedRows(inputs.snapshot) {
        let reach = ListenerReach(listeners: row.listeners, addresses: inputs.interfaces)
        // A loopback-only listener only ever sees packets over lo: that is its verdict.
        let byFamily = reach.families.map {
            ($0, inputs.firewall.verdict(proto: row.proto, port: row.port, family: $0, overLoopback: reach.exposure == .loopback))
        }
        let firewall = combine(byFamily)
        let executables = Array(Set(row.processes.compactMap { inputs.executables[$0.pid] })).sorted()
        var listener = AuditListener(summary: row, reach: reach, firewall: firewall, firewallByFamily: byFamily,
                                     executables: executables, banner: inputs.banners[row.key].map(bannerText), tls: inputs.tls[row.key], findings: [])
        if let finding = serviceFinding(listener, banner: inputs.banners[row.key]) {
            listener.findings.append(finding)
            findings.append(finding)
        }
        if let tls = listener.tls {
            let found = tlsFindings(tls, proto: row.proto, port: row.port, exposure: reach.exposure)
            listener.findings += found
            findings += found
        }
        listeners.append(listener)
    }
    var drift: Drift? = nil
    if let (baseline, source) = inputs.baseline {
        let d = Drift(baseline: baseline, current: listeners.map(\.baselineEntry), source: source)
        let exposure = Dictionary(listeners.map { ($0.key, $0.reach.exposure) }, uniquingKeysWith: { a, _ in a })
        for l in d.new {
            let loopback = exposure[PortKey.local(l.proto, l.port)] == .loopback
            let owner = l.executables.isEmpty ? "" : " (\(l.executables.joined(separator: ", ")))"
            findings.append(AuditFinding(severity: loopback ? .low : .medium, proto: l.proto, port: l.port,
                                         reason: "new listener since the baseline on \(l.addresses.joined(separator: ","))\(owner)"))
        }
        for c in d.ownerChanged {
            findings.append(AuditFinding(severity: .high, proto: c.proto, port: c.port,
                                         reason: "held by a different executable: \(c.after.joined(separator: ", ")) (baseline: \(c.before.joined(separator: ", ")))"))
        }
        for l in d.gone {
            findings.append(AuditFinding(severity: .low, proto: l.proto, port: l.port, reason: "listener gone since the baseline"))
        }
        // New and re-owned listeners carry their drift finding in their own row too.
        let firstDrift = findings.count - d.new.count - d.ownerChanged.count - d.gone.count
        for f in findings[firstDrift...] {
            if let at = listeners.firstIndex(where: { $0.key == PortKey.local(f.proto, f.port) }) {
                listeners[at].findings.append(f)
            }
        }
        drift = d
    }
    findings.sort { ($0.severity, $1.proto, $1.port) > ($1.severity, $0.proto, $0.port) }
    var notes = inputs.snapshot.notes
    if case .loaded(let e) = inputs.firewall, e.ruleset.tableCount > 0, !listeners.isEmpty {
        notes.append("firewall verdicts are for new connections from outside (not lo) addressed to the port directly; for loopback-only listeners, over lo")
    }
    return AuditReport(listeners: listeners, findings: findings, drift: drift, firewall: inputs.firewall.summary, notes: notes)
}

/// One verdict for several families: the same verdict when they agree; otherwise the most open
/// one (a port accepted over IPv4 is reachable, whatever IPv6 does), naming each family's.
public func combine(_ byFamily: [(PacketFamily, FirewallVerdict)]) -> FirewallVerdict {
    guard let first = byFamily.first else { return FirewallVerdict(.none, rule: "no address family") }
    if byFamily.allSatisfy({ $0.1.verdict == first.1.verdict }) { return first.1 }
    let order: [FirewallVerdictKind] = [.accept, .none, .unknown, .reject, .drop]
    let open = byFamily.min { order.firstIndex(of: $0.1.verdict)! < order.firstIndex(of: $1.1.verdict)! }!
    let rule = byFamily.map { "\($0.0.rawValue) \($0.1.verdict.rawValue): \($0.1.rule)" }.joined(separator: "; ")
    return FirewallVerdict(open.1.verdict, rule: rule)
}

/// The finding for a risky service on a listener, or nil (not risky, or loopback only).
func serviceFinding(_ listener: AuditListener, banner: [UInt8]?) -> AuditFinding? {
    let row = listener.summary
    guard listener.reach.exposure != .loopback, let service = RiskyService.on(row.proto, row.port) else { return nil }
    var (severity, reason) = (service.severity, service.reason)
    if let banner, let judged = judgeBanner(service, banner) { (severity, reason) = judged }
    reason += "; listens on \(row.addresses.joined(separator: ","))"
    if listener.firewall.blocks {
        severity = .low
        reason += "; the firewall blocks it from outside (\(listener.firewall.rule))"
    } else if listener.firewall.verdict == .unknown {
        reason += "; firewall verdict unknown (\(listener.firewall.rule))"
    }
    return AuditFinding(severity: severity, proto: row.proto, port: row.port, reason: reason)
}

/// Asks the risky services among `rows` what they are, over loopback (or the listener's own
/// address), all at once, each within `timeout` seconds.
public func readServiceBanners(_ rows: [PortSummary], timeout: Double = 0.5) -> [PortKey: [UInt8]] {
    var wanted: [(PortKey, IPAddress, [UInt8]?)] = []
    for row in rows where row.proto == .tcp {
        guard let service = RiskyService.on(row.proto, row.port), let probe = service.probe else { continue }
        guard let l = row.listeners.first else { continue }
        let ip = l.local.address
        let target: IPAddress = ip.isWildcard ? (ip.isV6 ? IPAddress("::1")! : IPAddress("127.0.0.1")!) : ip
        wanted.append((row.key, target, probe.request))
    }
    let asks = wanted
    let answers = Mutex<[PortKey: [UInt8]]>([:])
    DispatchQueue.concurrentPerform(iterations: asks.count) { i in
        let (key, ip, request) = asks[i]
        if let bytes = readBanner(ip, port: key.port, request: request, timeout: timeout) {
            answers.withLock { $0[key] = bytes }
        }
    }
    return answers.withLock { $0 }
}

/// Executable paths of every process holding one of `rows`.
public func readExecutables(_ rows: [PortSummary]) -> [Int32: String] {
    var out: [Int32: String] = [:]
    for row in rows {
        for p in row.processes where out[p.pid] == nil {
            if let path = executablePath(pid: p.pid) { out[p.pid] = path }
        }
    }
    return out
}

import ArgumentParser
import PortwatchCore

/// `portwatch audit`: exposure, firewall verdicts, risky services and drift per listener.
struct Audit: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Exposure report: who can reach each listener, the nftables verdict for it, risky services, drift from a baseline.",
        discussion: """
            Firewall verdicts are for a new connection from outside (not lo) addressed to the port. \
            Findings of drift count as findings: new listener medium (low on loopback), owner changed high, gone low.
            """)

    @Option(name: .long, help: "Compare with a baseline saved by --save-baseline: new, gone and re-owned listeners.")
    var baseline: String?

    @Option(name: .long, help: "Save the listeners now as a baseline file (JSON).")
    var saveBaseline: String?

    @Option(name: .long, help: "Exit 1 when a finding of this severity or worse exists (low, medium, high).")
    var failOn: Severity?

    @Flag(name: .long, help: "Do not talk to risky services on loopback to read their banners.")
    var noBanners = false

    @Flag(name: .long, help: "Try a TLS handshake on every TCP listener, not only well-known TLS ports (slower: a silent service holds its handshake until --tls-timeout).")
    var tlsAll = false

    @Flag(name: .long, help: "Do not try TLS handshakes (no certificate or protocol checks).")
    var noTls = false

    @Option(name: .long, help: "Seconds each TLS handshake may take (default 1).")
    var tlsTimeout: Double = 1

    @OptionGroup var output: OutputOptions

    func run() throws {
        // Read the baseline first: a bad file is an answer we cannot give, before any work.
        let saved = try baseline.map { (try Baseline.load($0), source: $0) }
        guard tlsTimeout > 0, tlsTimeout <= 60 else { throw PortwatchError.usage("invalid --tls-timeout '\(tlsTimeout)': must be between 0 and 60 seconds") }
        // `nft -j list ruleset` is a child process: it runs while the sockets are dumped.
        let firewall = inBackground { FirewallState.read() }
        var query = SocketQuery(withCounters: false)
        query.listenersOnly = true
        let snapshot = try PortSnapshot.take(SnapshotOptions(query: query, processes: .owners, socketSource: .fromEnvironment))
        let rows = auditedRows(snapshot)
        // Banners and TLS handshakes wait on other processes: both at once, each bounded.
        let tlsTargets = noTls ? [] : tlsAuditTargets(rows, everyListener: tlsAll)
        let timeout = tlsTimeout
        let tls = inBackground { readTLSReports(tlsTargets, timeout: timeout) }
        let banners = noBanners ? [:] : readServiceBanners(rows)
        let inputs = AuditInputs(snapshot: snapshot, interfaces: InterfaceAddress.current(), firewall: firewall.wait(),
                                 executables: readExecutables(rows), banners: banners, tls: tls.wait(),
                                 baseline: saved)
        let report = buildAudit(inputs)
        if let saveBaseline { try report.baseline.save(to: saveBaseline) }
        let services = ServiceDatabase.system
        if output.json {
            output.print { w in w.audit(report, services: services) }
        } else {
            emit(renderAudit(report, services: services, terminal: Terminal.stdout))
            for note in report.notes { printError("note: \(note)") }
        }
        if let failOn, let worst = report.worst, worst >= failOn { throw AnswerNo() }
    }
}

extension Severity: ExpressibleByArgument {
    public init?(argument: String) { self.init(rawValue: argument.lowercased()) }
}

/// `TLSv1.3 87d` (days the certificate has left), red once expired, yellow under the warning days.
private func tlsCell(_ tls: TLSReport?, terminal: Terminal) -> Table.Cell {
    guard let tls else { return .init(text: "-") }
    let text = "\(tls.version) \(tls.daysLeft)d"
    if tls.daysLeft < 0 { return .init(text: text, paint: { terminal.red($0) }) }
    if tls.daysLeft < certificateWarningDays { return .init(text: text, paint: { terminal.yellow($0) }) }
    return .init(text: text)
}

/// The human report of `audit`: listeners, then findings, then drift, then the firewall line.
func renderAudit(_ report: AuditReport, services: ServiceDatabase, terminal: Terminal) -> String {
    func paint(_ s: Severity?) -> ((String) -> String)? {
        switch s {
        case .high: return { terminal.red($0) }
        case .medium: return { terminal.yellow($0) }
        default: return nil
        }
    }
    var table = Table([.init(title: "PROTO"), .init(title: "PORT", align: .right), .init(title: "SERVICE"),
                       .init(title: "EXPOSURE"), .init(title: "ADDRESSES"), .init(title: "FIREWALL"),
                       .init(title: "TLS"), .init(title: "PROCESS"), .init(title: "FINDINGS", flexible: true)])
    for l in report.listeners {
        let s = l.summary
        let worst = l.findings.map(\.severity).max()
        let exposure = Table.Cell(text: l.reach.exposure.rawValue,
                                  paint: l.reach.exposure == .any ? { terminal.yellow($0) } : (l.reach.exposure == .loopback ? { terminal.dim($0) } : nil))
        let owner = s.processes.isEmpty && !s.ownerInodes.isEmpty ? "unknown" : processList(s.processes)
        let findings = worst.map { "\($0.rawValue): " + l.findings.map(\.reason).joined(separator: "; ") } ?? "-"
        table.add([.init(text: s.proto.rawValue), .init(text: String(s.port)),
                   .init(text: services.name(port: s.port, proto: s.proto) ?? "-"), exposure,
                   .init(text: s.addresses.joined(separator: ",")),
                   .init(text: l.firewall.verdict.rawValue, paint: l.firewall.verdict == .accept ? { terminal.yellow($0) } : nil),
                   tlsCell(l.tls, terminal: terminal), .init(text: owner), .init(text: findings, paint: paint(worst))])
    }
    var out = report.listeners.isEmpty ? "no listeners" : table.render(terminal)
    if !report.findings.isEmpty {
        out += "\nfindings:\n"
        for f in report.findings {
            let word = f.severity.rawValue.uppercased().padding(toLength: 6, withPad: " ", startingAt: 0)
            out += "  " + (paint(f.severity)?(word) ?? word) + " \(f.proto.rawValue)/\(f.port)  \(f.reason)\n"
        }
    } else {
        out += "\nno findings\n"
    }
    if let d = report.drift {
        if d.isEmpty {
            out += "drift: none since \(d.source)\n"
        } else {
            out += "drift since \(d.source): \(d.new.count) new, \(d.gone.count) gone, \(d.ownerChanged.count) owner changed\n"
        }
    }
    let blocked = report.listeners.filter { $0.firewall.verdict == .unknown }
    out += "firewall: \(report.firewall)"
    for l in blocked { out += "\n  \(l.summary.proto.rawValue)/\(l.summary.port) unknown: \(l.firewall.rule)" }
    return out
}

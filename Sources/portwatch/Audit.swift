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

    @OptionGroup var output: OutputOptions

    func run() throws {
        // Read the baseline first: a bad file is an answer we cannot give, before any work.
        let saved = try baseline.map { (try Baseline.load($0), source: $0) }
        var query = SocketQuery(withCounters: false)
        query.listenersOnly = true
        let snapshot = try PortSnapshot.take(SnapshotOptions(query: query, processes: .owners, socketSource: .fromEnvironment))
        let rows = auditedRows(snapshot)
        let inputs = AuditInputs(snapshot: snapshot, interfaces: InterfaceAddress.current(), firewall: FirewallState.read(),
                                 executables: readExecutables(rows), banners: noBanners ? [:] : readServiceBanners(rows),
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
                       .init(title: "PROCESS"), .init(title: "FINDINGS", flexible: true)])
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
                   .init(text: owner), .init(text: findings, paint: paint(worst))])
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

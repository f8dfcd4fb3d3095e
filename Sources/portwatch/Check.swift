import ArgumentParser
import PortwatchCore

/// `portwatch check`: the verdict for ports, local or remote, against an expectation.
struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Is the port free, listening, busy or overloaded (locally), open, closed or filtered (remotely)?",
        discussion: """
            --expect sets what exit 0 means (default: free locally, open with --host). \
            'listening' is met only while something listens (also busy or overloaded; a bound-only \
            socket or a client's source port is not listening), \
            'busy' by busy or overloaded; the others must match exactly. Every port must match. \
            A remote UDP port that neither answers nor refuses is open|filtered (as nmap says). \
            A host with several addresses is open when any accepts; otherwise it gets the strongest \
            answer among them (open|filtered, closed, filtered, unreachable).
            """)

    @Argument(help: "Ports: 8080, 8000-8100, 22,80,443, ssh, 53/udp. Unsuffixed means TCP unless --udp. Optional when --host names a port.")
    var ports: String?

    @Option(name: .long, help: "Check a remote host instead of this machine: a name, IPv4, IPv6 (fe80::1%eth0), optionally with a port (host:80, [fd00::2]:80).")
    var host: String?

    @Option(name: .long, help: "free|listening|busy|overloaded locally, open|closed|filtered|open|filtered|unreachable remotely.")
    var expect: Verdict?

    @Option(name: .long, help: "Remote: how long to wait for an answer, name resolution included (default 2s).",
            transform: { try parsePositiveSeconds($0) })
    var timeout: Double = 2

    @OptionGroup var window: SampleOptions

    @Flag(name: .long, help: "Unsuffixed ports (and service names) mean UDP.")
    var udp = false

    @OptionGroup var capture: CaptureOptions

    @OptionGroup var output: OutputOptions

    @OptionGroup var readiness: ReadinessOptions

    @OptionGroup var namespaces: NamespaceOptions

    @Option(name: .long, help: "text (default) or nagios (monitoring-plugins status line and exit code 0/1/2/3).")
    var format: ReportFormat = .text

    func run() throws {
        if format == .nagios && output.json { throw PortwatchError.usage("--format nagios and --json exclude each other: choose one") }
        if capture.capture && window.sample == nil { throw PortwatchError.usage("--capture measures over a window: add --sample (e.g. --sample 1s)") }
        if host != nil && namespaces.selection != .own {
            throw PortwatchError.usage("--netns and --all-namespaces check local ports; they do not combine with --host")
        }
        if host != nil && window.sample != nil { throw PortwatchError.usage("--sample measures local ports; it does not combine with --host") }
        let target = try host.map { try HostPort.parseHostOption($0, proto: udp ? .udp : nil) }
        let spec = try checkedPorts(hostPort: target?.port)
        let protos = spec.protocols(default: [udp ? .udp : .tcp])
        var pairs: [(TransportProtocol, UInt16)] = []
        for proto in TransportProtocol.allCases where protos.contains(proto) {
            for port in spec.ports(for: proto) { pairs.append((proto, port)) }
        }
        if pairs.isEmpty { throw PortwatchError.usage("no ports to check in '\(spec.text)'") }

        let expected: Verdict
        if let v = expect {
            if target == nil && !v.isLocal {
                throw PortwatchError.usage("--expect \(v.rawValue) needs --host (local ports are free, listening, busy or overloaded)")
            }
            if target != nil && v.isLocal {
                throw PortwatchError.usage("--expect \(v.rawValue) is a local verdict; with --host use open, closed, filtered, open|filtered or unreachable")
            }
            expected = v
        } else {
            expected = target == nil ? .free : .open
        }
        let services = ServiceDatabase.system
        if let target {
            try checkRemote(target.host, pairs, expected: expected, services: services)
        } else {
            try checkLocal(spec, protos, pairs, expected: expected, services: services)
        }
    }

    /// The ports to check: the argument, or the port `--host` names (both must agree when given).
    private func checkedPorts(hostPort: UInt16?) throws -> PortSpec {
        var spec: PortSpec
        switch (ports, hostPort) {
        case (nil, nil):
            throw PortwatchError.usage("missing ports: give PORTS (e.g. check 8080) or --host HOST:PORT")
        case (nil, let port?):
            spec = PortSpec(items: [.init(range: port...port)])
        case (let text?, let port):
            spec = try parsePorts(text)
            if let port, !(spec.isSinglePort && spec.items.allSatisfy({ $0.range == port...port })) {
                throw PortwatchError.usage("--host names port \(port) but the ports given are '\(text)': give the port once")
            }
        }
        if udp { spec = try spec.restricted(to: [.udp]) }
        return spec
    }

    private func checkRemote(_ host: String, _ pairs: [(TransportProtocol, UInt16)], expected: Verdict,
                             services: ServiceDatabase) throws {
        let start = now()
        let addresses = try resolveHost(host, timeout: timeout)
        let resolveSeconds = now() - start
        var results: [(RemoteCheck, CheckOutcome)] = []
        for (proto, port) in pairs {
            // Name resolution comes out of the first port's budget, so --timeout bounds a one-port check.
            let budget = results.isEmpty ? max(0.001, timeout - resolveSeconds) : timeout
            let result = try PortwatchCore.checkRemote(host: host, addresses: addresses, proto: proto, port: port, timeout: budget)
            let verdict = Verdict(result.state)
            results.append((result, CheckOutcome(expected: expected, matched: verdict == expected)))
        }
        let allMatched = results.allSatisfy(\.1.matched)
        if format == .nagios {
            let several = results.count > 1
            let summary = results.map { r, o in
                var s = "\(r.proto.rawValue)/\(r.port) on \(host) (\(r.decisive.address)): \(Verdict(r.state).rawValue)"
                if r.state == .open { s += " in \(String(format1: r.decisive.seconds * 1000)) ms" }
                if let reason = r.decisive.reason, r.state != .open { s += " (\(reason))" }
                if !o.matched { s += ", expected \(o.expected.rawValue)" }
                return s
            }
            let perf = results.filter { $0.0.state == .open || $0.0.state == .closed }.map { r, _ in
                "\(perfLabel("time", target: several ? "\(r.proto.rawValue)/\(r.port)" : nil))=\(perfSeconds(r.decisive.seconds));;;0"
            }
            let status: PluginStatus = allMatched ? .ok : .critical
            try finishNagios(status, nagiosLine(status, summary.joined(separator: "; "), perfdata: perf))
            return
        }
        if output.json {
            output.print { w in
                if results.count == 1 {
                    w.remoteCheck(results[0].0, results[0].1, service: services.name(port: results[0].0.port, proto: results[0].0.proto))
                } else {
                    w.beginObject()
                    w.array("checks") { w in
                        for (r, o) in results { w.remoteCheck(r, o, service: services.name(port: r.port, proto: r.proto)) }
                    }
                    w.field("expected", expected.rawValue)
                    w.field("matched", allMatched)
                    w.endObject()
                }
            }
        } else {
            let term = Terminal.stdout
            var lines: [String] = []
            for (r, _) in results {
                let ms = String(format1: r.decisive.seconds * 1000)
                var line = "\(r.proto.rawValue)/\(r.port) on \(host) (\(r.decisive.address)): \(paint(Verdict(r.state), term)) in \(ms) ms"
                if let reason = r.decisive.reason, r.state != .open { line += " — \(reason)" }
                lines.append(line)
            }
            emit(lines.joined(separator: "\n"))
        }
        if !allMatched { throw AnswerNo() }
    }

    private func checkLocal(_ spec: PortSpec, _ protos: Set<TransportProtocol>, _ pairs: [(TransportProtocol, UInt16)],
                            expected: Verdict, services: ServiceDatabase) throws {
        // Counts and queues need no tcp_info: skip it unless a window measures traffic.
        var query = SocketQuery(protocols: protos, withCounters: window.sample != nil)
        query.ports = portFilters(spec, protocols: protos)
        let options = SnapshotOptions(query: query, processes: .owners, socketSource: .fromEnvironment)
        if let targets = try namespaces.targets() {
            return try checkInNamespaces(targets, options: options, pairs, expected: expected, services: services)
        }
        let (snapshot, report) = try snapshotOrWindow(options, window: window.sample, capture: capture.capture, readiness: readiness)
        // The core judges (window drops and SYN cookies included) and matches the expectation.
        let checks: [(LocalCheck, CheckOutcome, PortWindow?)] = localChecks(ports: pairs, snapshot: snapshot, window: report).map { check in
            (check, CheckOutcome(expected: expected, matched: check.meets(expected)),
             report.map { PortWindow($0, key: PortKey.local(check.proto, check.port)) })
        }
        let allMatched = checks.allSatisfy(\.1.matched)
        if format == .nagios {
            let several = checks.count > 1
            let summary = checks.map { c, o, _ in
                var s = "\(c.proto.rawValue)/\(c.port): \(c.verdict.rawValue)"
                if !c.reasons.isEmpty { s += " (\(c.reasons.map(\.message).joined(separator: "; ")))" }
                if !o.matched { s += ", expected \(o.expected.rawValue)" }
                return s
            }
            let perf = checks.map { c, _, _ in
                "\(perfLabel("established", target: several ? "\(c.proto.rawValue)/\(c.port)" : nil))=\(c.connections.established);;;0"
            }
            // Met but overloaded is a warning: the port works, and is in trouble.
            let status: PluginStatus = !allMatched ? .critical : checks.contains { $0.0.verdict == .overloaded } ? .warning : .ok
            try finishNagios(status, nagiosLine(status, summary.joined(separator: "; "), perfdata: perf))
            return
        }
        if output.json {
            output.print { w in
                if checks.count == 1 {
                    // One check: the window's system-wide deltas go inside its object.
                    let (c, o, win) = checks[0]
                    // What could not be seen (owners hidden, a search cut short) goes in the
                    // document: a blank `processes` alone would read as "nobody".
                    w.localCheck(c, o, service: services.name(port: c.port, proto: c.proto), window: win,
                                 systemErrors: report) { w in w.notes(snapshot.notes) }
                } else {
                    w.beginObject()
                    w.array("checks") { w in
                        for (c, o, win) in checks { w.localCheck(c, o, service: services.name(port: c.port, proto: c.proto), window: win) }
                    }
                    w.field("expected", expected.rawValue)
                    w.field("matched", allMatched)
                    if let report { w.systemErrors(report) }
                    w.notes(snapshot.notes)
                    w.endObject()
                }
            }
        } else {
            let term = Terminal.stdout
            var lines: [String] = []
            for (check, _, win) in checks {
                let s = check.summary
                let service = services.name(port: check.port, proto: check.proto)
                var line = "\(check.proto.rawValue)/\(check.port)"
                if let service { line += " (\(service))" }
                line += ": \(paint(check.verdict, term))"
                var facts: [String] = []
                if !check.reasons.isEmpty { facts.append(check.reasons.map(\.message).joined(separator: "; ")) }
                if !check.listening && check.boundSockets > 0 {
                    facts.append("bound but not listening (\(check.boundSockets) socket\(check.boundSockets == 1 ? "" : "s"))")
                }
                if !check.listening && check.clientConnections > 0 {
                    facts.append("source port of \(check.clientConnections) outgoing connection\(check.clientConnections == 1 ? "" : "s")")
                }
                if let s, s.listening { facts.append("listening on \(s.addresses.joined(separator: ", "))") }
                if let q = s?.acceptQueue { facts.append("accept queue \(q.current)/\(q.max.map(String.init) ?? "?")") }
                if check.listening || check.connections.established > 0 {
                    facts.append("\(check.connections.established) established")
                }
                if let s, !s.processes.isEmpty { facts.append("held by \(processList(s.processes))") }
                if let win, check.verdict != .free {
                    let a = win.activity
                    let secs = win.seconds > 0 ? win.seconds : 1
                    facts.append("rx \(formatRate(bitsPerSecond: Double(a.traffic.bytesReceived) * 8 / secs))")
                    facts.append("tx \(formatRate(bitsPerSecond: Double(a.traffic.bytesSent) * 8 / secs))")
                }
                facts.append(contentsOf: check.caveats)
                if !facts.isEmpty { line += " — " + facts.joined(separator: ", ") }
                lines.append(line)
            }
            emit(lines.joined(separator: "\n"))
            for note in snapshot.notes { printError("note: \(note)") }
        }
        if !allMatched { throw AnswerNo() }
    }

    /// `--netns`/`--all-namespaces`: the same checks in each namespace; every one must match.
    private func checkInNamespaces(_ targets: NamespaceTargets, options: SnapshotOptions, _ pairs: [(TransportProtocol, UInt16)],
                                   expected: Verdict, services: ServiceDatabase) throws {
        var checks: [(NetworkNamespace, LocalCheck, CheckOutcome, PortWindow?)] = []
        var notes = targets.notes
        var lastReport: WindowReport?
        // Each namespace's window, for its own system counters.
        var windows = NamespaceWindows([])
        let (parts, viewNotes) = try namespaceParts(targets, options: options)
        for note in viewNotes where !notes.contains(note) { notes.append(note) }
        for part in parts {
            lastReport = part.report
            windows.parts.append((part.namespace, part.report))
            for check in localChecks(ports: pairs, snapshot: part.snapshot, window: part.report) {
                checks.append((part.namespace, check, CheckOutcome(expected: expected, matched: check.meets(expected)),
                               part.report.map { PortWindow($0, key: PortKey.local(check.proto, check.port)) }))
            }
            for note in part.snapshot.notes where !notes.contains(note) { notes.append(note) }
        }
        let allMatched = !checks.isEmpty && checks.allSatisfy(\.2.matched)
        if output.json {
            output.print { w in
                if checks.count == 1 {
                    let (ns, c, o, win) = checks[0]
                    w.localCheck(c, o, service: services.name(port: c.port, proto: c.proto), window: win,
                                 systemErrors: lastReport) { w in
                        w.namespaceMembers(ns, processes: c.summary?.processes ?? [])
                        w.notes(notes)
                    }
                } else {
                    w.beginObject()
                    w.array("checks") { w in
                        for (ns, c, o, win) in checks {
                            w.localCheck(c, o, service: services.name(port: c.port, proto: c.proto), window: win) { w in
                                w.namespaceMembers(ns, processes: c.summary?.processes ?? [])
                            }
                        }
                    }
                    w.field("expected", expected.rawValue)
                    w.field("matched", allMatched)
                    if windows.seconds != nil { w.systemErrorMembers(windows) }
                    w.notes(notes)
                    w.endObject()
                }
            }
        } else {
            let term = Terminal.stdout
            var lines: [String] = []
            for (ns, check, _, _) in checks {
                var line = "\(ns.label) \(check.proto.rawValue)/\(check.port): \(paint(check.verdict, term))"
                var facts: [String] = []
                if let s = check.summary, s.listening { facts.append("listening on \(s.addresses.joined(separator: ", "))") }
                if check.listening || check.connections.established > 0 { facts.append("\(check.connections.established) established") }
                if let s = check.summary, !s.processes.isEmpty { facts.append("held by \(processList(s.processes))") }
                if let c = NetworkNamespace.container(of: check.summary?.processes ?? []) {
                    facts.append("container \(c.runtime) \(c.id.prefix(12))")
                }
                facts.append(contentsOf: check.caveats)
                if !facts.isEmpty { line += " — " + facts.joined(separator: ", ") }
                lines.append(line)
            }
            emit(lines.joined(separator: "\n"))
            for note in notes { printError("note: \(note)") }
        }
        if !allMatched { throw AnswerNo() }
    }

    /// Each namespace's snapshot and, with `--sample`, its window. The namespaces share one
    /// window (every baseline, one wait, every sample), so the check takes the window once,
    /// not once per namespace; each namespace's window is still its own (its own sampler,
    /// destroy events and counters). Each part's notes carry what its window noted; `notes` are
    /// the view's own (namespaces not read, owners not seen).
    private func namespaceParts(_ targets: NamespaceTargets,
                                options: SnapshotOptions) throws -> (parts: [NamespacePart], notes: [String]) {
        guard let seconds = window.sample else {
            let parts = try targets.list.map { target in
                let (snapshot, _) = try snapshotOrWindow(options, window: nil, capture: false, in: target)
                return NamespacePart(namespace: target.0, snapshot: snapshot)
            }
            return (parts, [])
        }
        let sampler = try NamespaceSampler(options: options, selection: namespaces.selection, capture: capture.capture)
        let baseline = try sampler.start()
        try readiness.baselineTaken()
        sleepSeconds(seconds)
        let sampled = try sampler.sample()
        // A namespace that appeared during the window has no baseline: it was not there to be asked about.
        let measured = Set(baseline.parts.map(\.namespace.inode))
        var parts = sampled.parts.filter { $0.report != nil && measured.contains($0.namespace.inode) }
        // Namespaces that were entered but could not be sampled at all (a capture without
        // CAP_NET_RAW): the question could not be answered, as when each was sampled in turn.
        if parts.isEmpty && !targets.list.isEmpty {
            let why = (baseline.notes + sampled.notes).first { !targets.notes.contains($0) }
            throw PortwatchError.system(why ?? "the network namespaces could not be sampled")
        }
        for i in parts.indices { parts[i].snapshot.notes += parts[i].report?.notes ?? [] }
        return (parts, baseline.notes + sampled.notes)
    }

    private func paint(_ v: Verdict, _ term: Terminal) -> String {
        switch v {
        case .free, .open: return term.green(v.rawValue)
        case .listening, .busy, .openFiltered: return term.yellow(v.rawValue)
        default: return term.red(v.rawValue)
        }
    }
}

extension String {
    /// One decimal place, without Foundation's String(format:).
    init(format1 value: Double) {
        let scaled = (value * 10).rounded()
        guard scaled.isFinite, abs(scaled) < 1e15 else { self = "\(value)"; return }
        let i = Int64(scaled)
        self = "\(i / 10).\(abs(i % 10))"
    }
}

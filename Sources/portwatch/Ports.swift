import ArgumentParser
import PortwatchCore

/// `portwatch ports`: one row per port in use.
struct Ports: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List ports in use: state, addresses, connections, accept queue, traffic, owner.")

    @Argument(help: "Ports to show: 8080, 8000-8100, 22,80,443, ssh, 53/udp. Default: all.")
    var ports: String?

    @Flag(name: .long, help: "Also show outgoing connections, grouped by remote port.")
    var all = false

    @Flag(name: .long, help: "TCP only.")
    var tcp = false

    @Flag(name: .long, help: "UDP only.")
    var udp = false

    @Flag(name: .customShort("4"), help: "IPv4 only.")
    var ipv4 = false

    @Flag(name: .customShort("6"), help: "IPv6 only.")
    var ipv6 = false

    @Flag(name: .long, help: "Skip process attribution (faster, no /proc walk).")
    var noProcesses = false

    @OptionGroup var sample: SampleOptions

    @OptionGroup var capture: CaptureOptions

    @OptionGroup var output: OutputOptions

    @OptionGroup var readiness: ReadinessOptions

    @OptionGroup var namespaces: NamespaceOptions

    func run() throws {
        let window = sample.sample
        if capture.capture && window == nil { throw PortwatchError.usage("--capture measures over a window: add --sample (e.g. --sample 1s)") }
        var query = SocketQuery()
        query.protocols = tcp || udp ? Set([tcp ? .tcp : nil, udp ? .udp : nil].compactMap { $0 }) : [.tcp, .udp]
        if ipv4 != ipv6 { query.families = ipv4 ? [.inet] : [.inet6] }
        var spec: PortSpec? = nil
        if let text = ports {
            var parsed = try parsePorts(text)
            let flags = protocolFlags(tcp: tcp, udp: udp)
            if let flags { parsed = try parsed.restricted(to: flags) }
            spec = parsed
            query.protocols = parsed.protocols(default: flags ?? [.tcp, .udp])
            // --all with a port filter also keeps connections going *to* those ports.
            query.ports = portFilters(parsed, protocols: query.protocols, matchPeer: all)
        }
        let options = SnapshotOptions(query: query, includeOutgoing: all,
                                      processes: noProcesses ? .none : (all ? .full : .owners),
                                      socketSource: .fromEnvironment)
        if let targets = try namespaces.targets() {
            return try runInNamespaces(targets, options: options, window: window, spec: spec)
        }
        let (snapshot, report) = try snapshotOrWindow(options, window: window, capture: capture.capture, readiness: readiness)
        let rows = portRows(snapshot: snapshot, window: report, includeOutgoing: all, filter: spec)
        let services = ServiceDatabase.system
        if output.json {
            output.print { w in PortsDocument(snapshot: snapshot, report: report).write(rows, services: services, to: &w) }
        } else {
            let term = Terminal.stdout
            if rows.isEmpty {
                emit(spec == nil ? "no ports in use" : "no ports in use matching \(ports ?? "")")
            } else {
                emit(renderPortsTable(rows, services: services, processes: !noProcesses, terminal: term, window: report,
                                      bytesKnown: snapshot.source == "sock_diag"))
            }
            for row in rows where row.overloaded {
                emit("\(row.key.proto.rawValue)/\(row.key.port) overloaded: \(row.reasons.map(\.message).joined(separator: "; "))")
            }
            if let line = report?.systemErrorsLine { emit("system: " + line) }
            for note in snapshot.notes { printError("note: \(note)") }
        }
        if rows.isEmpty && spec != nil { throw AnswerNo() }
    }
}

extension Ports {
    /// `--netns`/`--all-namespaces`: the same rows per namespace, with one owner walk for all.
    private func runInNamespaces(_ targets: NamespaceTargets, options: SnapshotOptions, window: Double?,
                                 spec: PortSpec?) throws {
        let snapshot: NamespaceSnapshot
        if let window {
            let sampler = try NamespaceSampler(options: options, selection: namespaces.selection, capture: capture.capture)
            try sampler.start()
            try readiness.baselineTaken()
            sleepSeconds(window)
            snapshot = try sampler.sample()
        } else {
            snapshot = NamespaceSnapshot.take(options, namespaces: targets.list.map(\.0), sockets: targets.sockets)
        }
        if snapshot.parts.isEmpty, case .one = namespaces.selection {
            throw PortwatchError.system(snapshot.notes.first ?? "the network namespace could not be read")
        }
        var rows: [(part: Int, row: PortRow)] = []
        for (i, part) in snapshot.parts.enumerated() {
            for row in portRows(snapshot: part.snapshot, window: part.report, includeOutgoing: all, filter: spec) {
                rows.append((i, row))
            }
        }
        let services = ServiceDatabase.system
        if output.json {
            output.print { w in NamespacePortsDocument(snapshot: snapshot, notes: targets.notes).write(rows, services: services, to: &w) }
        } else {
            let windows = NamespaceWindows(snapshot.parts.map { ($0.namespace, $0.report) })
            if rows.isEmpty {
                emit(spec == nil ? "no ports in use" : "no ports in use matching \(ports ?? "")")
            } else {
                let labels: [String]? = snapshot.parts.count > 1 ? rows.map { snapshot.parts[$0.part].namespace.label } : nil
                // Each row's rates over its own namespace's window, its bytes known by its own
                // namespace's source (our own may read /proc/net/tcp while the others use sock_diag).
                let own = rows.map { row in
                    let part = snapshot.parts[row.part]
                    return RowWindow(seconds: part.report?.seconds ?? 0, bytesKnown: part.snapshot.source != "procfs")
                }
                emit(renderPortsTable(rows.map(\.row), services: services, processes: !noProcesses, terminal: Terminal.stdout,
                                      window: snapshot.parts.lazy.compactMap(\.report).first,
                                      rowWindows: own, namespaceLabels: labels))
            }
            for (i, row) in rows where row.overloaded {
                emit("\(snapshot.parts[i].namespace.label) \(row.key.proto.rawValue)/\(row.key.port) overloaded: \(row.reasons.map(\.message).joined(separator: "; "))")
            }
            // Each namespace's own system counters, named by it when several are shown.
            let several = snapshot.parts.count > 1
            for (ns, line) in windows.systemErrorLines {
                emit(several ? "system (\(ns?.label ?? "-")): \(line)" : "system: \(line)")
            }
            var notes = targets.notes
            for note in snapshot.notes + snapshot.parts.flatMap({ $0.snapshot.notes + ($0.report?.notes ?? []) }) where !notes.contains(note) {
                notes.append(note)
            }
            for note in notes { printError("note: \(note)") }
        }
        if rows.isEmpty && spec != nil { throw AnswerNo() }
    }
}

/// A row's own window length and whether its source knows bytes, in a table over namespaces.
struct RowWindow {
    var seconds: Double
    var bytesKnown: Bool
}

/// The human table of `ports`; `namespaceLabels` (one per row) adds a NAMESPACE column;
/// `rowWindows` (one per row) overrides `window`'s length and `bytesKnown` row by row.
func renderPortsTable(_ rows: [PortRow], services: ServiceDatabase, processes: Bool, terminal: Terminal,
                      window: WindowReport? = nil, bytesKnown: Bool = true, rowWindows: [RowWindow]? = nil,
                      namespaceLabels: [String]? = nil) -> String {
    var columns: [Table.Column] = namespaceLabels == nil ? [] : [.init(title: "NAMESPACE")]
    columns += [
        .init(title: "PROTO"), .init(title: "PORT", align: .right), .init(title: "SERVICE"),
        .init(title: "STATE"), .init(title: "ADDRESSES"),
        .init(title: "ESTAB", align: .right), .init(title: "SYN", align: .right),
        .init(title: "TW", align: .right), .init(title: "CW", align: .right),
        .init(title: "ACCEPTQ", align: .right),
        .init(title: window == nil ? "RX" : "RX/s", align: .right), .init(title: window == nil ? "TX" : "TX/s", align: .right),
    ]
    if window != nil { columns.append(.init(title: "ERRORS", align: .right)) }
    if processes { columns.append(.init(title: "PROCESS", flexible: true)) }
    var table = Table(columns)
    for (index, row) in rows.enumerated() {
        let p = row.summary
        let bytesKnown = rowWindows?[index].bytesKnown ?? bytesKnown
        let state: Table.Cell
        switch row.state {
        case .outgoing: state = .init(text: "outgoing", paint: terminal.dim)
        case .overloaded: state = .init(text: "overloaded", paint: terminal.red)
        case .listen: state = .init(text: "listen", paint: terminal.green)
        case .bound where p.listening: state = .init(text: "bound", paint: terminal.green)
        case .bound: state = .init(text: "bound", paint: terminal.yellow)
        case .timeWait: state = .init(text: "time-wait", paint: terminal.dim)
        default: state = .init(text: row.state.rawValue, paint: terminal.yellow)
        }
        var addresses = p.addresses
        if addresses.count > 3 { addresses = Array(addresses.prefix(3)) + ["+\(p.addresses.count - 3)"] }
        let queue = p.acceptQueue.map { "\($0.current)/\($0.max.map(String.init) ?? "?")" } ?? "-"
        let service: String = services.name(port: p.port, proto: p.proto) ?? "-"
        let shownAddresses: String = addresses.isEmpty ? "-" : addresses.joined(separator: ",")
        let handshakes: Int = p.connections.synRecv + p.connections.synSent
        // UDP sockets and the /proc/net fallback carry no byte counters: unknown, not zero.
        let known = bytesKnown && p.proto == .tcp
        var rx: String = known ? formatBytes(p.traffic.bytesReceived) : "-"
        var tx: String = known ? formatBytes(p.traffic.bytesSent) : "-"
        var errors = ""
        if let window {
            let a = row.activity
            let length = rowWindows?[index].seconds ?? window.seconds
            let seconds = length > 0 ? length : 1
            if bytesKnown || p.proto == .udp {
                rx = formatRate(bitsPerSecond: Double(a.traffic.bytesReceived) * 8 / seconds)
                tx = formatRate(bitsPerSecond: Double(a.traffic.bytesSent) * 8 / seconds)
            }
            errors = String(row.errorCount)
        }
        var cells: [Table.Cell] = namespaceLabels.map { [.init(text: $0[index])] } ?? []
        cells += [.init(text: p.proto.rawValue), .init(text: String(p.port)), .init(text: service)]
        cells.append(state)
        cells.append(.init(text: shownAddresses))
        cells.append(.init(text: String(p.connections.established)))
        cells.append(.init(text: String(handshakes)))
        cells.append(.init(text: String(p.connections.timeWait)))
        cells.append(.init(text: String(p.connections.closeWait)))
        let queuePaint: ((String) -> String)? = row.overloaded ? { terminal.red($0) } : nil
        cells.append(.init(text: queue, paint: queuePaint))
        cells.append(.init(text: rx))
        cells.append(.init(text: tx))
        if window != nil { cells.append(.init(text: errors, paint: errors != "0" ? { terminal.red($0) } : nil)) }
        if processes {
            // Sockets whose owner could not be seen say so (the note on stderr says why).
            let owner = p.processes.isEmpty && !p.ownerInodes.isEmpty ? "unknown" : processList(p.processes)
            cells.append(.init(text: owner, paint: owner == "unknown" ? { terminal.dim($0) } : nil))
        }
        table.add(cells)
    }
    return table.render(terminal)
}

import ArgumentParser
import PortwatchCore
#if canImport(Glibc)
import Glibc
#endif

/// `portwatch top`: the live view — per-port rates, connections, errors and a sparkline.
struct Top: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Live per-port view: rx/tx rates, packets/s, connections, errors, a one-minute sparkline.",
        discussion: "Keys: r/t/c/e sort by rx, tx, connections, errors; a toggles outgoing rows; q or Ctrl-C quits.")

    @Argument(help: "Only these ports (default: all).")
    var ports: String?

    @Option(name: .long, help: "Time between refreshes, 50ms-1h (default 1s).", transform: { try parseSeconds($0) })
    var interval: Double = 1

    @Option(name: .long, help: "Sort by rx, tx, conns or errors (default rx).")
    var sort: TopSort = .rx

    @Option(name: .long, help: "Stop after this many refreshes (for scripts and tests).")
    var iterations: Int?

    @Flag(name: .long, help: "Also show outgoing connections, grouped by remote port.")
    var all = false

    @OptionGroup var capture: CaptureOptions

    @OptionGroup var output: OutputOptions

    @OptionGroup var readiness: ReadinessOptions

    @OptionGroup var namespaces: NamespaceOptions

    func run() throws {
        let seconds = interval
        if seconds < 0.05 || seconds > 3600 { throw PortwatchError.usage("--interval: must be between 50ms and 1h") }
        let order = sort
        if let iterations, iterations < 1 { throw PortwatchError.usage("invalid --iterations \(iterations): must be at least 1") }
        let spec = try ports.map { try parsePorts($0) }
        var query = SocketQuery()
        if let spec {
            query.protocols = spec.protocols(default: [.tcp, .udp])
            query.ports = portFilters(spec, protocols: query.protocols, matchPeer: true)
        }
        var model = TopModel(spec: spec, sort: order, showOutgoing: all, interval: seconds)
        let options = SnapshotOptions(query: query, includeOutgoing: true, processes: .owners, socketSource: .fromEnvironment)
        let sampler = try TopSampler(options: options, selection: namespaces.selection, capture: capture.capture,
                                     detectors: capture.capture ? DetectorSettings() : nil)
        try sampler.start()
        try readiness.baselineTaken()

        if output.json || !Terminal.stdout.isTTY || isatty(STDIN_FILENO) != 1 {
            // Scripts: one JSON document per refresh (JSON Lines) when stdout is not a terminal
            // or --json asks; a terminal without a keyboard (stdin redirected) gets plain tables.
            let lines = output.json || !Terminal.stdout.isTTY
            var done = 0
            var deadline = now() + seconds
            while iterations.map({ done < $0 }) ?? true {
                // Deadlines, not sleeps after work: refreshes stay `interval` apart even when a
                // sample takes a while.
                sleepSeconds(deadline - now())
                deadline = max(deadline + seconds, now())
                model.update(try sampler.sample())
                if lines {
                    var w = JSONWriter(sink: { writeAll(STDOUT_FILENO, $0) })
                    model.write(to: &w)
                    w.newline()
                    w.flush()
                } else {
                    emit(model.render(width: Terminal.stdout.width, height: 1000, color: false))
                }
                done += 1
            }
            return
        }

        let screen = try ScreenSession()
        defer { screen.restore() }
        var done = 0
        var nextSample = now() + seconds
        screen.draw(model.render(width: screen.size().width, height: screen.size().height, color: Terminal.stdout.color, waiting: true))
        while iterations.map({ done < $0 }) ?? true {
            let wait = max(0, nextSample - now())
            if let key = screen.readKey(timeout: min(wait, 0.25)) {
                switch key {
                case "q", "Q", "\u{03}", "\u{1B}": return
                case "r": model.sort = .rx
                case "t": model.sort = .tx
                case "c": model.sort = .conns
                case "e": model.sort = .errors
                case "a": model.showOutgoing.toggle()
                default: break
                }
                let size = screen.size()
                screen.draw(model.render(width: size.width, height: size.height, color: Terminal.stdout.color))
                continue
            }
            if now() >= nextSample {
                model.update(try sampler.sample())
                done += 1
                nextSample += seconds
                if nextSample < now() { nextSample = now() + seconds }
            }
            // Redraw on every tick so a resized terminal is followed within 250 ms.
            let size = screen.size()
            screen.draw(model.render(width: size.width, height: size.height, color: Terminal.stdout.color))
        }
    }
}


/// What `top` shows: the latest snapshot and window, plus a minute of history per port.
struct TopModel {
    var spec: PortSpec?
    var sort: TopSort
    var showOutgoing: Bool
    var interval: Double
    /// The latest sample of each namespace shown (one part, without a namespace, by default).
    var parts: [TopPart] = []
    /// How long the latest sample took, every namespace's together.
    var sampleSeconds: Double = 0
    /// Each part's window; the primary one speaks for the system, as without the flags.
    var windows: NamespaceWindows { NamespaceWindows(parts.map { ($0.namespace, $0.report) }) }
    /// The snapshot whose time the view shows: the primary part's, else the first.
    var snapshot: PortSnapshot? { (windows.primary.map { parts[$0] } ?? parts.first)?.snapshot }
    /// Every namespace's detections together (nil without detectors).
    var security: SecurityReport? {
        let reports = parts.compactMap { $0.report?.security }
        guard !reports.isEmpty else { return nil }
        return SecurityReport(events: reports.flatMap(\.events), active: reports.flatMap(\.active),
                              untrackedSources: reports.reduce(0) { $0 + $1.untrackedSources })
    }
    /// Whether rows say which namespace they are in (more than one shown).
    var tagged: Bool { parts.count > 1 }
    /// Per port (and namespace), recent rx+tx bit rates for the sparkline (one minute).
    var history: [TopRowKey: [Double]] = [:]
    let services = ServiceDatabase.system

    mutating func update(_ sample: TopSample) {
        self.parts = sample.parts
        sampleSeconds = sample.seconds
        let keep = max(1, Int((60 / interval).rounded()))
        var next: [TopRowKey: [Double]] = [:]
        for (index, row) in rows(includeAll: true) {
            let report = self.parts[index].report
            let secs = (report?.seconds ?? 0) > 0 ? report!.seconds : 1
            let key = TopRowKey(namespace: self.parts[index].namespace?.inode, port: row.key)
            var series = history[key] ?? []
            series.append(Double(row.activity.traffic.bytesReceived + row.activity.traffic.bytesSent) * 8 / secs)
            if series.count > keep { series.removeFirst(series.count - keep) }
            next[key] = series
        }
        history = next
    }

    /// The rows of every part, with the index of the part each came from, in the chosen order.
    func rows(includeAll: Bool = false) -> [(part: Int, row: PortRow)] {
        var out: [(part: Int, row: PortRow)] = []
        for (i, part) in parts.enumerated() {
            for row in portRows(snapshot: part.snapshot, window: part.report, includeOutgoing: showOutgoing || includeAll, filter: spec) {
                out.append((i, row))
            }
        }
        out.sort { a0, b0 in
            let (a, b) = (a0.row, b0.row)
            let (x, y): (UInt64, UInt64)
            switch sort {
            case .rx: (x, y) = (a.activity.traffic.bytesReceived, b.activity.traffic.bytesReceived)
            case .tx: (x, y) = (a.activity.traffic.bytesSent, b.activity.traffic.bytesSent)
            case .conns: (x, y) = (UInt64(a.summary.connections.total), UInt64(b.summary.connections.total))
            case .errors: (x, y) = (a.errorCount, b.errorCount)
            }
            return x != y ? x > y : a.key != b.key ? a.key < b.key : a0.part < b0.part
        }
        return out
    }

    /// One JSON Lines record: the window's rows as PORT objects with `window` and `rates`.
    func write(to w: inout JSONWriter) {
        let windows = self.windows
        w.beginObject()
        w.field("taken_at", double: snapshot?.takenAt ?? 0)
        w.field("interval_seconds", double: windows.seconds ?? 0)
        w.field("sample_seconds", double: sampleSeconds)
        w.field("sort", sort.rawValue)
        w.array("ports") { w in
            for (index, row) in rows() {
                let part = parts[index]
                w.port(row, service: services.name(port: row.key.port, proto: row.key.proto),
                       window: part.report.map { PortWindow($0, row: row) }) { w in
                    if let ns = part.namespace { w.namespaceMembers(ns, processes: row.summary.processes) }
                }
            }
        }
        w.systemErrorMembers(windows)
        w.captureMembers(windows.parts, kernelDrops: false)
        w.securityMembers(parts.map { ($0.namespace, $0.report?.security) })
        var notes: [String] = []
        for part in parts {
            for note in part.snapshot.notes + (part.report?.notes ?? []) + part.notes where !notes.contains(note) { notes.append(note) }
        }
        w.notes(notes)
        w.endObject()
    }

    /// The full screen as text lines (no cursor movement; the caller places it).
    func render(width: Int, height: Int, color: Bool, waiting: Bool = false) -> String {
        let term = Terminal(isTTY: true, color: color, width: width)
        var lines: [String] = []
        let all = rows()
        // Each namespace's rows over its own window (namespaces are sampled together, but each
        // window is measured apart).
        let partSeconds = parts.map { part in (part.report?.seconds ?? 0) > 0 ? part.report!.seconds : 1 }
        var totalRx = 0.0, totalTx = 0.0
        for (index, r) in all {
            totalRx += Double(r.activity.traffic.bytesReceived) * 8 / partSeconds[index]
            totalTx += Double(r.activity.traffic.bytesSent) * 8 / partSeconds[index]
        }
        var header = "portwatch top — \(all.count) port\(all.count == 1 ? "" : "s"), every \(formatDuration(.milliseconds(Int64(interval * 1000))))"
        header += ", sort \(sort.rawValue)  rx \(formatRate(bitsPerSecond: totalRx))"
        header += "  tx \(formatRate(bitsPerSecond: totalTx))"
        lines.append(term.bold(truncateLine(header, width)))
        if parts.contains(where: { !($0.report?.system.isEmpty ?? true) }) {
            // Each namespace's own counters, named by their namespace when several are shown.
            let said = windows.systemErrorLines.map { (tagged ? "\($0.namespace?.label ?? "-"): " : "") + $0.line }
            lines.append(truncateLine("system errors: " + (said.isEmpty ? "none" : said.joined(separator: " · ")), width))
        } else {
            lines.append(waiting ? "measuring…" : "")
        }
        if parts.contains(where: { $0.report?.captured == true }) {
            // Every namespace's capture, each hit named by its namespace when several are shown.
            let hits = parts.flatMap { part in
                (part.report?.closedPortHits ?? [:]).map { (tagged ? "\(part.namespace?.label ?? "-") " : "", $0.key, $0.value) }
            }.sorted { $0.2 > $1.2 }.prefix(4)
                .map { "\($0.0)\($0.1.port)/\($0.1.proto.rawValue) from \($0.1.source) ×\($0.2)" }
            lines.append(truncateLine("closed-port hits: " + (hits.isEmpty ? "none" : hits.joined(separator: ", ")), width))
        }
        var table = Table((tagged ? [.init(title: "NAMESPACE")] : []) + [
            .init(title: "PROTO"), .init(title: "PORT", align: .right), .init(title: "SERVICE"),
            .init(title: "STATE"), .init(title: "ACCEPTQ", align: .right),
            .init(title: "RX/s", align: .right), .init(title: "TX/s", align: .right),
            .init(title: "PKT/s", align: .right), .init(title: "CONNS", align: .right),
            .init(title: "NEW", align: .right), .init(title: "ERR", align: .right),
            .init(title: "LAST MINUTE"), .init(title: "PROCESS", flexible: true),
        ])
        let room = max(1, height - lines.count - 3 - (security != nil ? 1 : 0))
        for (index, row) in all.prefix(room) {
            let a = row.activity
            let secs = partSeconds[index]
            let port = row.key.role == .remote ? "→\(row.key.port)" : String(row.key.port)
            let namespaceCell: [Table.Cell] = tagged ? [.init(text: parts[index].namespace?.label ?? "-")] : []
            let historyKey = TopRowKey(namespace: parts[index].namespace?.inode, port: row.key)
            table.add(namespaceCell + [
                .init(text: row.key.proto.rawValue), .init(text: port),
                .init(text: services.name(port: row.key.port, proto: row.key.proto) ?? "-"),
                .init(text: row.state.rawValue, paint: row.overloaded ? { term.red($0) } : nil),
                .init(text: row.summary.acceptQueue.map { "\($0.current)/\($0.max.map(String.init) ?? "?")" } ?? "-",
                      paint: row.overloaded ? { term.red($0) } : nil),
                .init(text: formatRate(bitsPerSecond: Double(a.traffic.bytesReceived) * 8 / secs)),
                .init(text: formatRate(bitsPerSecond: Double(a.traffic.bytesSent) * 8 / secs)),
                .init(text: String(format1: Double(a.traffic.packetsReceived + a.traffic.packetsSent) / secs)),
                .init(text: String(row.summary.connections.total)),
                .init(text: String(a.opened)),
                .init(text: String(row.errorCount), paint: row.errorCount > 0 ? { term.red($0) } : nil),
                .init(text: sparkline(history[historyKey] ?? [], width: 20)),
                .init(text: processList(row.summary.processes)),
            ])
        }
        lines.append(contentsOf: table.render(term).split(separator: "\n", omittingEmptySubsequences: false).map(String.init))
        if all.count > room { lines.append(term.dim("… \(all.count - room) more")) }
        if security != nil {
            // Each namespace's detections, named by their namespace when several are shown.
            let names = parts.flatMap { part in
                (part.report?.security?.active ?? []).map { (tagged ? "\(part.namespace?.label ?? "-"): " : "") + $0.message }
            }
            let line = "detections: " + (names.isEmpty ? "none" : names.joined(separator: " · "))
            lines.append(names.isEmpty ? truncateLine(line, width) : term.red(truncateLine(line, width)))
        }
        lines.append(term.dim("q quit · r/t/c/e sort rx/tx/conns/errors · a outgoing \(showOutgoing ? "on" : "off")"))
        return lines.joined(separator: "\n")
    }
}

/// One namespace's latest sample in `top` (namespace nil: portwatch's own, without the flags).
struct TopPart {
    var namespace: NetworkNamespace?
    var snapshot: PortSnapshot
    var report: WindowReport?
    /// What could not be seen (namespaces not entered), shown once.
    var notes: [String] = []
}

/// One refresh of `top`: every namespace's part, and how long taking them took.
struct TopSample {
    var parts: [TopPart]
    var seconds: Double
}

/// A sparkline's series: a port in a namespace.
struct TopRowKey: Hashable {
    var namespace: UInt64?
    var port: PortKey
}

/// The sampler behind `top`: the plain one, or one per namespace with the flags.
final class TopSampler {
    private let plain: Sampler?
    private let spread: NamespaceSampler?

    init(options: SnapshotOptions, selection: NamespaceSelection, capture: Bool, detectors: DetectorSettings?) throws {
        if selection == .own {
            plain = try Sampler(options: options, capture: capture, detectors: detectors)
            spread = nil
        } else {
            plain = nil
            spread = try NamespaceSampler(options: options, selection: selection, capture: capture, detectors: detectors)
        }
    }

    func start() throws {
        if let plain { try plain.start() } else { try spread?.start() }
    }

    func sample() throws -> TopSample {
        if let plain {
            let (snapshot, report) = try plain.sample()
            return TopSample(parts: [TopPart(namespace: nil, snapshot: snapshot, report: report)], seconds: report.sampleSeconds)
        }
        guard let spread else { return TopSample(parts: [], seconds: 0) }
        let started = now()
        let taken = try spread.sample()
        var parts = taken.parts.map { TopPart(namespace: $0.namespace, snapshot: $0.snapshot, report: $0.report) }
        if !parts.isEmpty { parts[0].notes = taken.notes }
        // The namespaces' samplers run side by side, then one owner walk serves them all: the
        // sample took that whole time, not any one sampler's.
        return TopSample(parts: parts, seconds: now() - started)
    }
}

func truncateLine(_ s: String, _ width: Int) -> String {
    displayWidth(s) > width ? truncate(s, to: width) : s
}

/// ▁▂▃▄▅▆▇█ over the series, scaled to its maximum; padded on the left to `width`.
func sparkline(_ series: [Double], width: Int) -> String {
    let blocks: [Character] = ["▁", "▂", "▃", "▄", "▅", "▆", "▇", "█"]
    let tail = series.suffix(width)
    let peak = tail.max() ?? 0
    var out = String(repeating: " ", count: width - tail.count)
    for v in tail {
        if peak <= 0 || v <= 0 { out.append(" ") ; continue }
        let i = min(blocks.count - 1, Int((v / peak) * Double(blocks.count - 1) + 0.5))
        out.append(blocks[max(0, i)])
    }
    return out
}

/// Saved terminal state, restored by the signal handler if we are killed mid-draw.
/// nonisolated(unsafe): written once before the handlers are installed, then only read.
nonisolated(unsafe) private var savedTermios = termios()
nonisolated(unsafe) private var termiosSaved = false

/// Show the cursor, wrap lines again, leave the alternate screen.
private let restoreSequence = "\u{1B}[?25h\u{1B}[?7h\u{1B}[?1049l"

/// Full-screen terminal mode: alternate screen, hidden cursor, keys unbuffered; undone by
/// `restore()`, by SIGTERM/SIGHUP, and on every exit path.
final class ScreenSession {
    private var restored = false

    init() throws {
        if tcgetattr(STDIN_FILENO, &savedTermios) != 0 {
            throw PortwatchError.system("top needs a terminal on stdin (use --json or --iterations in scripts)")
        }
        termiosSaved = true
        var raw = savedTermios
        // No line buffering, no echo, and Ctrl-C as a key (so we quit through our own cleanup).
        raw.c_lflag &= ~tcflag_t(ICANON | ECHO | ISIG)
        raw.c_cc.6 = 0  // VMIN
        raw.c_cc.5 = 0  // VTIME
        tcsetattr(STDIN_FILENO, TCSANOW, &raw)
        let handler: @convention(c) (Int32) -> Void = { sig in
            if termiosSaved { tcsetattr(STDIN_FILENO, TCSANOW, &savedTermios) }
            restoreSequence.withCString { _ = write(STDOUT_FILENO, $0, strlen($0)) }
            _exit(128 + sig)
        }
        signal(SIGTERM, handler)
        signal(SIGHUP, handler)
        // Alternate screen, hidden cursor, and no auto-wrap: a line wider than a narrowed
        // terminal is clipped at the edge instead of spilling onto the next row.
        writeAll(STDOUT_FILENO, "\u{1B}[?1049h\u{1B}[?25l\u{1B}[?7l")
    }

    deinit { restore() }

    func restore() {
        if restored { return }
        restored = true
        writeAll(STDOUT_FILENO, restoreSequence)
        if termiosSaved { tcsetattr(STDIN_FILENO, TCSANOW, &savedTermios) }
        signal(SIGTERM, SIG_DFL)
        signal(SIGHUP, SIG_DFL)
    }

    func size() -> (width: Int, height: Int) {
        var ws = winsize()
        if ioctl(STDOUT_FILENO, UInt(TIOCGWINSZ), &ws) == 0, ws.ws_col > 0, ws.ws_row > 0 {
            return (Int(ws.ws_col), Int(ws.ws_row))
        }
        return (80, 24)
    }

    /// Home, draw, clear the rest: no flicker from clearing the whole screen first.
    func draw(_ text: String) {
        let body = text.split(separator: "\n", omittingEmptySubsequences: false).map { $0 + "\u{1B}[K" }.joined(separator: "\r\n")
        writeAll(STDOUT_FILENO, "\u{1B}[H" + body + "\u{1B}[J")
    }

    /// One key press, or nil after `timeout` seconds.
    func readKey(timeout: Double) -> Character? {
        var pfd = pollfd(fd: STDIN_FILENO, events: Int16(POLLIN), revents: 0)
        let n = poll(&pfd, 1, Int32(max(0, timeout * 1000)))
        guard n > 0 else { return nil }
        var byte: UInt8 = 0
        guard read(STDIN_FILENO, &byte, 1) == 1 else { return nil }
        if byte == 0x1B {
            // An escape sequence (arrow keys...) is not a quit: swallow its tail.
            var rest = [UInt8](repeating: 0, count: 8)
            var p2 = pollfd(fd: STDIN_FILENO, events: Int16(POLLIN), revents: 0)
            if poll(&p2, 1, 10) > 0 { _ = read(STDIN_FILENO, &rest, rest.count); return " " }
        }
        return Character(Unicode.Scalar(byte))
    }
}

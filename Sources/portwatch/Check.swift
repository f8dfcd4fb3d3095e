import ArgumentParser
import PortwatchCore

/// `portwatch check`: the verdict for ports, local or remote, against an expectation.
struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Is the port free, listening, busy or overloaded (locally), open, closed or filtered (remotely)?",
        discussion: """
            --expect sets what exit 0 means (default: free locally, open with --host). \
            'listening' is met by any port something listens on (also busy or overloaded), \
            'busy' by busy or overloaded; the others must match exactly. Every port must match.
            """)

    @Argument(help: "Ports: 8080, 8000-8100, 22,80,443, ssh, 53/udp. Unsuffixed means TCP unless --udp.")
    var ports: String

    @Option(name: .long, help: "Check a remote host (name, IPv4 or IPv6) instead of this machine.")
    var host: String?

    @Option(name: .long, help: "free|listening|busy|overloaded locally, open|closed|filtered|unreachable remotely.")
    var expect: String?

    @Option(name: .long, help: "Remote: how long to wait for an answer (default 2s).")
    var timeout: String = "2s"

    @Option(name: .long, help: "Locally: measure over this window (e.g. 1s): rates, window totals; drops rising means overloaded.")
    var sample: String?

    @Flag(name: .long, help: "Unsuffixed ports mean UDP.")
    var udp = false

    @Flag(name: .long, help: "Also capture packets (AF_PACKET, needs root or CAP_NET_RAW): UDP traffic per port and packets hitting closed ports.")
    var capture = false

    @OptionGroup var output: OutputOptions

    @OptionGroup var readiness: ReadinessOptions

    func run() throws {
        if capture && sample == nil { throw PortwatchError.usage("--capture measures over a window: add --sample (e.g. --sample 1s)") }
        if host != nil && sample != nil { throw PortwatchError.usage("--sample measures local ports; it does not combine with --host") }
        let spec = try parsePorts(ports)
        let protos = spec.protocols(default: [udp ? .udp : .tcp])
        var pairs: [(TransportProtocol, UInt16)] = []
        for proto in TransportProtocol.allCases where protos.contains(proto) {
            for port in spec.ports(for: proto) { pairs.append((proto, port)) }
        }
        if pairs.isEmpty { throw PortwatchError.usage("no ports to check in '\(ports)'") }

        let remoteHost = try host.map { try HostPort.parseHost($0) }
        let expected: Verdict
        if let text = expect {
            guard let v = Verdict(rawValue: text.lowercased()) else {
                throw PortwatchError.usage("invalid --expect '\(text)': use free, listening, busy, overloaded, open, closed, filtered or unreachable")
            }
            if remoteHost == nil && !v.isLocal {
                throw PortwatchError.usage("--expect \(text) needs --host (local ports are free, listening, busy or overloaded)")
            }
            if remoteHost != nil && v.isLocal {
                throw PortwatchError.usage("--expect \(text) is a local verdict; with --host use open, closed, filtered or unreachable")
            }
            expected = v
        } else {
            expected = remoteHost == nil ? .free : .open
        }

        var results: [JSONValue] = []
        var lines: [String] = []
        // System-wide error deltas of a --sample window: inside the one check's object, or
        // beside the list of checks.
        var systemErrors: JSONValue? = nil
        let oneCheck = pairs.count == 1
        var allMatched = true
        let term = Terminal.stdout
        let services = ServiceDatabase.system

        if let remoteHost {
            let seconds = try durationSeconds(timeout, option: "--timeout")
            if seconds <= 0 { throw PortwatchError.usage("--timeout: must be more than 0 (an answer takes time)") }
            let addresses = try resolveHost(remoteHost)
            for (proto, port) in pairs {
                var best: ConnectResult? = nil
                for address in addresses {
                    let r = proto == .tcp
                        ? try probeTCP(address, port: port, timeout: seconds)
                        : try probeUDP(address, port: port, timeout: seconds)
                    if best == nil || r.state == .open { best = r }
                    if r.state == .open { break }
                }
                guard let result = best else { continue }
                let verdict = Verdict(result.state)
                let matched = verdict == expected
                allMatched = allMatched && matched
                results.append([
                    "protocol": .string(proto.rawValue), "port": .number(port), "host": .string(remoteHost),
                    "address": .string(result.address.description),
                    "service": .optional(services.name(port: port, proto: proto)),
                    "verdict": .string(verdict.rawValue), "expected": .string(expected.rawValue),
                    "matched": .bool(matched), "seconds": .double(result.seconds),
                ])
                let ms = String(format1: result.seconds * 1000)
                lines.append("\(proto.rawValue)/\(port) on \(remoteHost) (\(result.address)): \(paint(verdict, term)) in \(ms) ms")
            }
        } else {
            // Counts and queues need no tcp_info: skip it unless a window measures traffic.
            var query = SocketQuery(protocols: protos, withCounters: sample != nil)
            query.ports = portFilters(spec, protocols: protos)
            let options = SnapshotOptions(query: query, processes: .owners)
            let window = try sample.map { try sampleWindow($0) }
            let (snapshot, report) = try snapshotOrWindow(options, window: window, capture: capture, readiness: readiness)
            systemErrors = report?.systemJSON
            for check in localChecks(ports: pairs, snapshot: snapshot, window: report) {
                let activity = report?.activity(PortKey.local(check.proto, check.port))
                let matched = check.meets(expected)
                allMatched = allMatched && matched
                let s = check.summary
                let service = services.name(port: check.port, proto: check.proto)
                var pairs: [(String, JSONValue)] = [
                    ("protocol", .string(check.proto.rawValue)), ("port", .number(check.port)), ("host", .null),
                    ("service", .optional(service)),
                    ("verdict", .string(check.verdict.rawValue)), ("expected", .string(expected.rawValue)),
                    ("matched", .bool(matched)),
                    ("listening", .bool(check.listening)),
                    ("addresses", .array((s?.addresses ?? []).map { .string($0) })),
                    ("connections", check.connections.json),
                    ("accept_queue", s?.acceptQueue.map(\.json) ?? .null),
                    ("time_wait", .number(check.timeWait)),
                    ("bound_sockets", .number(check.boundSockets)),
                    ("client_connections", .number(check.clientConnections)),
                    ("reasons", .array(check.reasons.map(\.json))),
                    ("caveats", .array(check.caveats.map { .string($0) })),
                    ("errors", s?.errorsJSON ?? .null),
                    ("processes", .array((s?.processes ?? []).map(\.json))),
                ]
                if let activity, let report {
                    pairs.append(("window", activity.windowJSON(seconds: report.seconds, captured: report.captured)))
                    pairs.append(("rates", activity.ratesJSON(seconds: report.seconds)))
                    if oneCheck { pairs.append(("system_errors", report.systemJSON)) }
                }
                results.append(.object(pairs))
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
                if let activity, let report, check.verdict != .free {
                    let secs = report.seconds > 0 ? report.seconds : 1
                    facts.append("rx \(formatRate(bitsPerSecond: Double(activity.traffic.bytesReceived) * 8 / secs))")
                    facts.append("tx \(formatRate(bitsPerSecond: Double(activity.traffic.bytesSent) * 8 / secs))")
                }
                facts.append(contentsOf: check.caveats)
                if !facts.isEmpty { line += " — " + facts.joined(separator: ", ") }
                lines.append(line)
            }
            for note in snapshot.notes where !output.json { printError("note: \(note)") }
        }

        if output.json {
            if results.count == 1 {
                output.print(results[0])
            } else {
                var doc: [(String, JSONValue)] = [("checks", .array(results)), ("expected", .string(expected.rawValue)),
                                                  ("matched", .bool(allMatched))]
                if let systemErrors { doc.append(("system_errors", systemErrors)) }
                output.print(.object(doc))
            }
        } else {
            emit(lines.joined(separator: "\n"))
        }
        if !allMatched { throw AnswerNo() }
    }

    private func paint(_ v: Verdict, _ term: Terminal) -> String {
        switch v {
        case .free, .open: return term.green(v.rawValue)
        case .listening, .busy: return term.yellow(v.rawValue)
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

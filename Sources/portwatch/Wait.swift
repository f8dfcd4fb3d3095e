import ArgumentParser
import PortwatchCore
#if canImport(Glibc)
import Glibc
#endif

/// `portwatch wait`: block until ports reach a state, or the timeout passes.
struct Wait: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Wait until ports are listening or free (locally), open or closed (with --host).",
        discussion: """
            A remote UDP port that never answers is open|filtered: waiting for it to be open ends \
            with exit 2 (cannot tell), not 1.
            """)

    @Argument(help: "Ports: 8080, 8000-8100, 22,80,443, ssh, 53/udp. Unsuffixed means TCP. Optional when --host names a port.")
    var ports: String?

    @Option(name: .long, help: "Wait for a remote host's ports: a name, IPv4, IPv6, optionally with a port ([fd00::2]:80).")
    var host: String?

    @Option(name: .long, help: "listening|free locally, open|closed with --host.")
    var until: WaitGoal

    @Option(name: .long, help: "Give up after this long, name resolution included (default 60s).",
            transform: { try parsePositiveSeconds($0) })
    var timeout: Double = 60

    @OptionGroup var output: OutputOptions

    @OptionGroup var namespaces: NamespaceOptions

    func run() throws {
        let target = try host.map { try HostPort.parseHostOption($0) }
        if target == nil && !until.isLocal {
            throw PortwatchError.usage("invalid --until '\(until.rawValue)': use listening or free (open/closed need --host)")
        }
        if target != nil && until.isLocal {
            throw PortwatchError.usage("invalid --until '\(until.rawValue)': with --host use open or closed")
        }
        let spec: PortSpec
        switch (ports, target?.port) {
        case (nil, nil): throw PortwatchError.usage("missing ports: give PORTS (e.g. wait 8080) or --host HOST:PORT")
        case (nil, let port?): spec = PortSpec(items: [.init(range: port...port)])
        case (let text?, let port):
            spec = try parsePorts(text)
            if let port, !(spec.isSinglePort && spec.items.allSatisfy({ $0.range == port...port })) {
                throw PortwatchError.usage("--host names port \(port) but the ports given are '\(text)': give the port once")
            }
        }
        let protos = spec.protocols(default: [.tcp])
        var pairs: [(TransportProtocol, UInt16)] = []
        for proto in TransportProtocol.allCases where protos.contains(proto) {
            for port in spec.ports(for: proto) { pairs.append((proto, port)) }
        }
        if target != nil && namespaces.selection != .own {
            throw PortwatchError.usage("--netns and --all-namespaces wait for local ports; they do not combine with --host")
        }
        // Namespaces are looked up once; `listening` is reached when any of them listens,
        // `free` when the port is free in all of them.
        let targets = try namespaces.targets()
        let limit = timeout
        let start = now()
        let addresses = try target.map { try resolveHost($0.host, timeout: limit) }
        var attempts = 0
        var states: [String] = Array(repeating: "unknown", count: pairs.count)
        var reachedEach: [Bool] = Array(repeating: false, count: pairs.count)
        while true {
            attempts += 1
            if let addresses, let target {
                for (i, (proto, port)) in pairs.enumerated() {
                    let remaining = max(0.05, min(1.0, limit - (now() - start)))
                    let r = try checkRemote(host: target.host, addresses: addresses, proto: proto, port: port, timeout: remaining)
                    states[i] = Verdict(r.state).rawValue
                    reachedEach[i] = until == .open ? r.state == .open : r.state == .closed
                }
            } else {
                var query = SocketQuery(protocols: protos, withCounters: false)
                query.ports = portFilters(spec, protocols: protos)
                let options = SnapshotOptions(query: query, processes: .none, socketSource: .fromEnvironment)
                let sources: [(any SocketSource)?] = targets.map { $0.list.map { Optional($0.1) } } ?? [nil]
                for (n, source) in sources.enumerated() {
                    let snapshot = try PortSnapshot.take(options, source: source)
                    for (i, check) in localChecks(ports: pairs, snapshot: snapshot).enumerated() {
                        // The one rule `check --expect` uses: only a listener meets `listening`.
                        let met = check.meets(until == .free ? .free : .listening)
                        if n == 0 || (until == .free ? !met : met) {
                            states[i] = check.verdict.rawValue
                            reachedEach[i] = met
                        }
                    }
                }
            }
            let elapsed = now() - start
            if !reachedEach.contains(false) || elapsed >= limit { break }
            // Poll gently: 100 ms locally (one targeted netlink query), 250 ms for remote connects.
            let pause = min(target == nil ? 0.1 : 0.25, limit - elapsed)
            if pause > 0 { usleep(UInt32(pause * 1_000_000)) }
        }
        let reached = !reachedEach.contains(false)
        let elapsed = now() - start
        let shown = ports ?? target.map(\.description) ?? ""
        // A silent UDP port could be open: a wait for open that only ever saw silence cannot say no.
        let undecided = !reached && until == .open
            && zip(states, reachedEach).contains { state, done in !done && state == Verdict.openFiltered.rawValue }
        if output.json {
            output.print { w in
                w.beginObject()
                w.array("ports") { w in
                    for (i, (proto, port)) in pairs.enumerated() {
                        w.waitedPort(proto, port, state: states[i], reached: reachedEach[i])
                    }
                }
                w.field("spec", shown)
                w.field("host", target?.host)
                w.field("until", until.rawValue)
                w.field("reached", reached)
                w.field("seconds", double: (elapsed * 1000).rounded() / 1000)
                w.field("attempts", attempts)
                w.endObject()
            }
        } else {
            emit(reached ? "\(shown): \(until.rawValue) after \(String(format1: elapsed))s"
                         : "\(shown): not \(until.rawValue) after \(String(format1: elapsed))s (timeout)")
        }
        if undecided {
            throw PortwatchError.usage("cannot tell whether \(shown) is open: UDP gave no answer and no refusal (open|filtered) for \(String(format1: elapsed))s")
        }
        if !reached { throw AnswerNo() }
    }
}

func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

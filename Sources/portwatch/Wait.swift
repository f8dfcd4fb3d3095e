import ArgumentParser
import PortwatchCore
#if canImport(Glibc)
import Glibc
#endif

/// `portwatch wait`: block until ports reach a state, or the timeout passes.
struct Wait: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Wait until ports are listening or free (locally), open or closed (with --host).")

    @Argument(help: "Ports: 8080, 8000-8100, 22,80,443, ssh, 53/udp. Unsuffixed means TCP.")
    var ports: String

    @Option(name: .long, help: "Wait for a remote host's ports.")
    var host: String?

    @Option(name: .long, help: "listening|free locally, open|closed with --host.")
    var until: String

    @Option(name: .long, help: "Give up after this long (default 60s).")
    var timeout: String = "60s"

    @OptionGroup var output: OutputOptions

    func run() throws {
        let spec = try parsePorts(ports)
        let protos = spec.protocols(default: [.tcp])
        let remoteHost = try host.map { try HostPort.parseHost($0) }
        let target = until.lowercased()
        let valid = remoteHost == nil ? ["listening", "free"] : ["open", "closed"]
        guard valid.contains(target) else {
            throw PortwatchError.usage("invalid --until '\(until)': use \(valid.joined(separator: " or "))\(remoteHost == nil ? " (open/closed need --host)" : "")")
        }
        let limit = try durationSeconds(timeout, option: "--timeout")
        if limit <= 0 { throw PortwatchError.usage("--timeout: must be more than 0") }
        var pairs: [(TransportProtocol, UInt16)] = []
        for proto in TransportProtocol.allCases where protos.contains(proto) {
            for port in spec.ports(for: proto) { pairs.append((proto, port)) }
        }
        let addresses = try remoteHost.map { try resolveHost($0) }
        let start = now()
        var attempts = 0
        var reached = false
        while true {
            attempts += 1
            if let addresses {
                reached = try pairs.allSatisfy { proto, port in
                    let remaining = max(0.05, min(1.0, limit - (now() - start)))
                    let states = try addresses.map { a in
                        proto == .tcp ? try probeTCP(a, port: port, timeout: remaining).state
                                      : try probeUDP(a, port: port, timeout: remaining).state
                    }
                    return target == "open" ? states.contains(.open) : states.allSatisfy { $0 == .closed }
                }
            } else {
                var query = SocketQuery(protocols: protos, withCounters: false)
                query.ports = portFilters(spec, protocols: protos)
                let snapshot = try PortSnapshot.take(SnapshotOptions(query: query, processes: .none, socketSource: .fromEnvironment))
                reached = localChecks(ports: pairs, snapshot: snapshot).allSatisfy { check in
                    target == "free" ? check.verdict == .free : check.verdict != .free && check.summary?.listening == true
                }
            }
            let elapsed = now() - start
            if reached || elapsed >= limit { break }
            // Poll gently: 100 ms locally (one targeted netlink query), 250 ms for remote connects.
            let pause = min(remoteHost == nil ? 0.1 : 0.25, limit - elapsed)
            if pause > 0 { usleep(UInt32(pause * 1_000_000)) }
        }
        let elapsed = now() - start
        if output.json {
            output.print(["ports": .string(ports), "host": .optional(remoteHost), "until": .string(target),
                          "reached": .bool(reached), "seconds": .double((elapsed * 1000).rounded() / 1000),
                          "attempts": .number(attempts)])
        } else {
            emit(reached ? "\(ports): \(target) after \(String(format1: elapsed))s"
                         : "\(ports): not \(target) after \(String(format1: elapsed))s (timeout)")
        }
        if !reached { throw AnswerNo() }
    }
}

func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

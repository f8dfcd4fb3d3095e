import ArgumentParser
import PortwatchCore

/// `--json`, shared by every command.
struct OutputOptions: ParsableArguments {
    @Flag(name: .long, help: "Print one JSON document on stdout.")
    var json = false

    /// Prints a JSON document (pretty on a terminal, compact in pipes).
    func print(_ value: JSONValue) {
        emit(value.serialized(pretty: Terminal.stdout.isTTY))
    }
}

/// Parses a port spec, turning failures into the one-line usage error.
func parsePorts(_ text: String) throws -> PortSpec {
    try PortSpec(parsing: text)
}

/// The protocols a spec covers when a command defaults to `defaults` for unsuffixed items.
func protocols(of spec: PortSpec, tcpFlag: Bool, udpFlag: Bool, defaults: Set<TransportProtocol>) -> Set<TransportProtocol> {
    var base = defaults
    if tcpFlag || udpFlag {
        base = []
        if tcpFlag { base.insert(.tcp) }
        if udpFlag { base.insert(.udp) }
    }
    return spec.protocols(default: base)
}

/// Kernel-side port filters for the (proto, port) pairs a spec names.
func portFilters(_ spec: PortSpec, protocols: Set<TransportProtocol>, matchPeer: Bool = false)
    -> [TransportProtocol: PortFilter] {
    var filters: [TransportProtocol: PortFilter] = [:]
    for proto in protocols {
        let ranges = spec.ranges(for: proto)
        if ranges.isEmpty { continue }
        filters[proto] = PortFilter(local: ranges, peer: matchPeer ? ranges : [])
    }
    return filters
}

extension ProcessRecord {
    /// `nginx[1234]` for tables.
    var short: String { "\(name)[\(pid)]" }
}

/// `nginx[1234],nginx[1240]` with a cap so a pre-fork server does not fill the line.
func processList(_ processes: [ProcessRecord], limit: Int = 3) -> String {
    if processes.isEmpty { return "-" }
    var names = processes.prefix(limit).map(\.short)
    if processes.count > limit { names.append("+\(processes.count - limit)") }
    return names.joined(separator: ",")
}

/// Parses a duration option, naming the option in the error.
func durationSeconds(_ text: String, option: String) throws -> Double {
    do {
        let d = try parseDuration(text)
        let (s, atto) = d.components
        return Double(s) + Double(atto) / 1e18
    } catch {
        throw PortwatchError.usage("\(option): \(error.message)")
    }
}

/// Parses `--sample`: a window between 1 ms and 1 h.
func sampleWindow(_ text: String) throws -> Double {
    let window = try durationSeconds(text, option: "--sample")
    if window <= 0 || window > 3600 { throw PortwatchError.usage("--sample: must be between 1ms and 1h") }
    return window
}

/// One snapshot, or (with a window) two snapshots `window` seconds apart and what happened
/// between them; the window's notes join the snapshot's.
func snapshotOrWindow(_ options: SnapshotOptions, window: Double?, capture: Bool,
                      readiness: ReadinessOptions? = nil) throws -> (PortSnapshot, WindowReport?) {
    guard let window else { return (try PortSnapshot.take(options), nil) }
    let sampler = try Sampler(options: options, capture: capture)
    try sampler.start()
    try readiness?.baselineTaken()
    sleepSeconds(window)
    var (snapshot, report) = try sampler.sample()
    snapshot.notes.append(contentsOf: report.notes)
    return (snapshot, report)
}

/// Round-trip time for tables: microseconds below 1 ms, else milliseconds.
func formatRTT(micros: UInt32) -> String {
    micros < 1000 ? "\(micros)us" : String(format1: Double(micros) / 1000) + "ms"
}

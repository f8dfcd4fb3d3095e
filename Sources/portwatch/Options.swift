import ArgumentParser
import PortwatchCore
#if canImport(Glibc)
import Glibc
#endif

/// `--json`, shared by every command.
struct OutputOptions: ParsableArguments {
    @Flag(name: .long, help: "Print one JSON document on stdout.")
    var json = false

    /// A JSON writer that streams to stdout (pretty on a terminal, compact in pipes); call
    /// `finish(_:)` on it when the document is complete.
    func jsonWriter() -> JSONWriter {
        JSONWriter(pretty: Terminal.stdout.isTTY, sink: { bytes in writeAll(STDOUT_FILENO, bytes) })
    }

    /// Writes what is left of a document and its closing newline.
    func finish(_ writer: inout JSONWriter) {
        writer.newline()
        writer.flush()
    }

    /// Builds and prints one document with `body`.
    func print(_ body: (inout JSONWriter) -> Void) {
        var writer = jsonWriter()
        body(&writer)
        finish(&writer)
    }
}

/// `--sample`, shared by the commands that can measure over a window (ports, check).
struct SampleOptions: ParsableArguments {
    @Option(name: .long, help: "Measure over this window (e.g. 1s, 1ms-1h): rates, window totals and errors.",
            transform: { try sampleWindow($0) })
    var sample: Double?
}

/// `--capture`, shared by the commands that measure over a window (ports, check, top).
struct CaptureOptions: ParsableArguments {
    @Flag(name: .long, help: "Also capture packets (AF_PACKET, needs root or CAP_NET_RAW): UDP traffic per port, packets hitting closed ports, and (in top) port scans, SYN floods and connection storms.")
    var capture = false
}

/// `--netns` and `--all-namespaces`, shared by every command that reads sockets.
struct NamespaceOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("Read sockets in this network namespace: a name from /run/netns, a namespace file, or pid:PID.", valueName: "NAME|PATH|pid:PID"))
    var netns: String?

    @Flag(name: .long, help: "Read sockets in every network namespace (named ones, containers, unshare -n); rows say which.")
    var allNamespaces = false

    func validate() throws {
        if netns != nil && allNamespaces { throw PortwatchError.usage("--netns and --all-namespaces do not combine: give one") }
    }

    /// Which namespaces the flags ask for (`.own` without either: behaviour as before).
    var selection: NamespaceSelection {
        if allNamespaces { return .all }
        if let netns { return .one(netns) }
        return .own
    }

    /// The namespaces to read and a socket source for each, or nil without either flag. A
    /// namespace `--netns` names that cannot be read is an error (exit 2); with
    /// `--all-namespaces` those that cannot be entered become notes and the rest are answered.
    func targets() throws -> NamespaceTargets? {
        let selection = selection
        if selection == .own { return nil }
        let found = try NamespaceDirectory.select(selection)
        let sockets = NamespaceSockets(choice: .fromEnvironment)
        var list: [(NetworkNamespace, any SocketSource)] = []
        var notes = found.notes
        for (ns, source) in zip(found.namespaces, sockets.sources(for: found.namespaces)) {
            switch source {
            case .success(let s): list.append((ns, s))
            case .failure(let error):
                if case .one = selection { throw error }
                notes.append(error.message)
            }
        }
        return NamespaceTargets(list: list, notes: notes, sockets: sockets, found: found.namespaces)
    }
}

/// The namespaces a command reads, each with its socket source, and what could not be read.
struct NamespaceTargets {
    var list: [(NetworkNamespace, any SocketSource)]
    var notes: [String]
    var sockets: NamespaceSockets
    var found: [NetworkNamespace]
    /// Rows need a NAMESPACE column when more than one namespace is shown.
    var tagged: Bool { list.count > 1 }
}

/// Parses a duration option value (seconds); the parser names the option in its error.
func parseSeconds(_ text: String) throws -> Double {
    let (s, atto) = try parseDuration(text).components
    return Double(s) + Double(atto) / 1e18
}

/// A duration that must be more than zero (timeouts).
func parsePositiveSeconds(_ text: String) throws -> Double {
    let seconds = try parseSeconds(text)
    if seconds <= 0 { throw PortwatchError.usage("must be more than 0 (an answer takes time)") }
    return seconds
}

/// Parses `--sample`: a window between 1 ms and 1 h.
func sampleWindow(_ text: String) throws -> Double {
    let window = try parseSeconds(text)
    if window < 0.001 || window > 3600 { throw PortwatchError.usage("must be between 1ms and 1h") }
    return window
}

// MARK: - Fixed sets of values

extension Verdict: ExpressibleByArgument {
    public init?(argument: String) { self.init(rawValue: argument.lowercased()) }
}

/// What `wait --until` waits for.
enum WaitGoal: String, CaseIterable, ExpressibleByArgument {
    case listening, free, open, closed

    init?(argument: String) { self.init(rawValue: argument.lowercased()) }

    var isLocal: Bool { self == .listening || self == .free }
}

/// `top --sort`.
enum TopSort: String, CaseIterable, ExpressibleByArgument {
    case rx, tx, conns, errors

    init?(argument: String) { self.init(rawValue: argument.lowercased()) }
}

/// `connections --state`: every TCP state a connection can be in (not `listen`).
struct ConnectionStateArgument: ExpressibleByArgument {
    var state: SocketState

    static let choices: [SocketState] = [.established, .synSent, .synRecv, .finWait1, .finWait2, .timeWait,
                                         .closeWait, .lastAck, .closing, .close]

    init?(argument: String) {
        guard let s = SocketState(name: argument), s != .listen else { return nil }
        state = s
    }

    static var allValueStrings: [String] { choices.map { $0.name.replacing("_", with: "-") } }
}

/// `kill --signal`: any name `kill -l` knows, with or without SIG, or a number.
extension SignalName: ExpressibleByArgument {
    public init?(argument: String) { try? self.init(parsing: argument) }
    public static var allValueStrings: [String] { SignalName.all.map(\.name) }
}

// MARK: - Ports and protocols

/// Parses a port spec, turning failures into the one-line usage error.
func parsePorts(_ text: String) throws -> PortSpec {
    try PortSpec(parsing: text)
}

/// The protocols `--tcp`/`--udp` ask for (nil when neither is given).
func protocolFlags(tcp: Bool, udp: Bool) -> Set<TransportProtocol>? {
    if !tcp && !udp { return nil }
    var set: Set<TransportProtocol> = []
    if tcp { set.insert(.tcp) }
    if udp { set.insert(.udp) }
    return set
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

/// One snapshot, or (with a window) two snapshots `window` seconds apart and what happened
/// between them; the window's notes join the snapshot's.
func snapshotOrWindow(_ options: SnapshotOptions, window: Double?, capture: Bool,
                      readiness: ReadinessOptions? = nil,
                      in namespace: (NetworkNamespace, any SocketSource)? = nil) throws -> (PortSnapshot, WindowReport?) {
    var options = options
    options.ownerNamespace = namespace?.0.inode
    guard let window else { return (try PortSnapshot.take(options, source: namespace?.1), nil) }
    let sampler = try Sampler(options: options, source: namespace?.1, capture: capture, namespace: namespace?.0)
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

/// Parses a duration option value (seconds), naming the option in the error.
func durationSeconds(_ text: String, option: String) throws -> Double {
    do {
        return try parseSeconds(text)
    } catch let error as PortwatchError {
        throw PortwatchError.usage("\(option): \(error.message)")
    }
}

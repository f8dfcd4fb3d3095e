#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import Synchronization

/// How much process attribution a snapshot needs.
public enum ProcessAttribution: Sendable, Hashable {
    /// None (`--no-processes`): the fastest answer.
    case none
    /// Owners of the local rows' sockets: a targeted scan that reads low fds first and goes on
    /// only for the sockets still unowned, within `ProcessScanner.boundedHighFdBudget` fds above
    /// 1023 (listeners live low; connection fds can number tens of thousands).
    case owners
    /// Every row's sockets, outgoing ones too, searching every fd until each owner is found
    /// (`who`, `kill`).
    case ownersThorough
    /// Every socket of every process (used when most sockets are wanted anyway).
    case full
}

/// What one snapshot covers.
public struct SnapshotOptions: Sendable, Hashable {
    public var query: SocketQuery
    /// Group outgoing connections by remote port (`ports --all`).
    public var includeOutgoing: Bool
    public var processes: ProcessAttribution
    /// Where sockets come from when no source is given.
    public var socketSource: SocketSourceChoice
    /// Leave out, in the kernel, connections that can only be outgoing (see
    /// `serverSideFilters`). For views without outgoing rows that run all the time (the
    /// daemon): their cost then no longer grows with the machine's client sockets.
    /// Ignored with `includeOutgoing` or a port-filtered query.
    public var skipOutgoing: Bool
    /// The network namespace (nsfs inode) the sockets live in, when known: its processes are
    /// searched first for owners above fd 1023 (see `ProcessScanner.scan`).
    public var ownerNamespace: UInt64? = nil

    public init(query: SocketQuery = SocketQuery(), includeOutgoing: Bool = false,
                processes: ProcessAttribution = .owners, socketSource: SocketSourceChoice = .automatic,
                skipOutgoing: Bool = false) {
        self.query = query
        self.includeOutgoing = includeOutgoing
        self.processes = processes
        self.socketSource = socketSource
        self.skipOutgoing = skipOutgoing
    }
}

/// The kernel's socket view at one instant, folded per port: what the CLI, `top` and the
/// daemon all start from.
public struct PortSnapshot: Sendable {
    /// Wall-clock time of the sample, seconds since the epoch.
    public var takenAt: Double
    /// Monotonic time of the sample (seconds), for window lengths that a clock step cannot bend.
    public var monotonicAt: Double = 0
    /// Where the sockets came from ("sock_diag" or "procfs").
    public var source: String
    public var sockets: [SocketRecord]
    public var ports: [PortSummary]
    /// Socket inode → owning pids (empty without process attribution).
    public var owners: OwnerTable
    public var processes: [Int32: ProcessRecord]
    /// Things the reader should know: what could not be seen, and why.
    public var notes: [String]
    /// Why some owners may be missing (processes the kernel would not show us), as the error a
    /// command reports when it cannot answer without them; nil when every process was visible.
    public var ownerProblem: PortwatchError? = nil
    /// Which row each socket belongs to (knows every listener, even for filtered queries).
    public var classifier: PortClassifier

    /// Takes a snapshot: one dump, one aggregation, and (if asked) one process scan.
    public static func take(_ options: SnapshotOptions,
                            source: (any SocketSource)? = nil) throws(PortwatchError) -> PortSnapshot {
        var cache: OwnerCache? = nil
        return try take(options, source: source ?? defaultSocketSource(options.socketSource), ownerCache: &cache)
    }

    /// Takes a snapshot, reusing what `ownerCache` already knows of socket owners (for repeated
    /// samples: listeners and their processes rarely change, so only new sockets are searched).
    ///
    /// `memory` (kept by a `Sampler`) places connections whose listener has closed since an
    /// earlier sample on the listener's row.
    public static func take(_ options: SnapshotOptions, source: any SocketSource,
                            ownerCache: inout OwnerCache?, memory: SideMemory? = nil) throws(PortwatchError) -> PortSnapshot {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        // Dump, classify and fold: the part that only needs the kernel's socket tables.
        @Sendable func collect() throws(PortwatchError) -> ([SocketRecord], PortClassifier, [PortSummary]) {
            let sockets = try SocketCollector(source: source, query: dumpQuery(options, source: source, memory: memory))
                .collect().value
            var classifier = PortClassifier(sockets: sockets, ephemeral: source.ephemeralRange, memory: memory)
            if options.query.ports != nil {
                // A port-filtered dump misses the listeners of other ports, and with them the
                // knowledge of which side of a connection is the server: ask for all listeners
                // (a short list, without counters).
                var listeners = options.query
                listeners.ports = nil
                listeners.withCounters = false
                listeners.listenersOnly = true
                classifier.addListeners(try source.sockets(listeners))
            }
            let ports = summarizePorts(sockets, includeOutgoing: options.includeOutgoing, classifier: classifier)
            return (sockets, classifier, ports)
        }

        var fullScan: ProcessScan? = nil
        let sockets: [SocketRecord]
        let classifier: PortClassifier
        var ports: [PortSummary]
        if options.processes == .full {
            // A full process walk does not depend on the dump: walk beside it. The walk is cut
            // in several parts so the two cores stay busy until the end (whichever thread is
            // free takes the next part), and the fold runs while the walk goes on.
            let walkParts = 6
            // One listing, split: parts listing /proc each on their own would skip pids whenever
            // processes come and go between their listings.
            let pids = ProcessScanner.listPids()
            let parts = Mutex<[ProcessScanner.FullScanPart]>([])
            let collected = Mutex<Result<([SocketRecord], PortClassifier, [PortSummary]), PortwatchError>?>(nil)
            DispatchQueue.concurrentPerform(iterations: 1 + walkParts) { i in
                if i == 0 {
                    let r = Result { () throws(PortwatchError) in try collect() }
                    collected.withLock { $0 = r }
                } else {
                    let part = ProcessScanner.fullScanPart(pids: ProcessScanner.slice(pids, part: i - 1, of: walkParts))
                    parts.withLock { $0.append(part) }
                }
            }
            guard let result = collected.withLock({ $0 }) else { throw PortwatchError.system("socket dump did not run") }
            (sockets, classifier, ports) = try result.get()
            fullScan = ProcessScanner.finishFullScan(parts.withLock { $0 })
        } else {
            (sockets, classifier, ports) = try collect()
        }
        var notes = source.notes
        var owners = OwnerTable()
        var processes: [Int32: ProcessRecord] = [:]
        var ownerProblem: PortwatchError? = nil
        if options.processes != .none && !ports.isEmpty {
            let scan: ProcessScan
            if let fullScan {
                scan = fullScan
            } else {
                // Owners of local ports (listeners, server sockets); outgoing rows' owners need
                // the full walk (`ports --all`).
                var wanted = Set<UInt64>()
                for p in ports where p.role == .local || options.processes == .ownersThorough {
                    wanted.formUnion(p.ownerInodes)
                }
                let budget = options.processes == .ownersThorough ? nil : ProcessScanner.boundedHighFdBudget
                var namespaces: [UInt64: UInt64] = [:]
                if let ns = options.ownerNamespace {
                    for inode in wanted { namespaces[inode] = ns }
                }
                if ownerCache != nil {
                    scan = ownerCache!.lookup(wanted, now: Double(ts.tv_sec), highFdBudget: budget, namespaces: namespaces)
                } else {
                    var collector = OwnerCollector(inodes: wanted, highFdBudget: budget)
                    collector.namespaces = namespaces
                    scan = collector.collect().value
                }
            }
            owners = scan.owners
            processes = scan.processes
            notes.append(contentsOf: scan.notes)
            ownerProblem = scan.permissionProblem
            attach(owners: owners, processes: processes, to: &ports)
        }
        var mono = timespec()
        clock_gettime(CLOCK_MONOTONIC, &mono)
        return PortSnapshot(takenAt: Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9,
                            monotonicAt: Double(mono.tv_sec) + Double(mono.tv_nsec) / 1e9, source: source.name,
                            sockets: sockets, ports: ports, owners: owners, processes: processes, notes: notes,
                            ownerProblem: ownerProblem, classifier: classifier)
    }

    /// The query to dump with: the caller's, or with `skipOutgoing` the same with a kernel-side
    /// filter built from the listeners of this instant (a short listeners-only dump first) and
    /// what `memory` knows of the previous sample.
    static func dumpQuery(_ options: SnapshotOptions, source: any SocketSource,
                          memory: SideMemory?) throws(PortwatchError) -> SocketQuery {
        guard options.skipOutgoing, !options.includeOutgoing, options.query.ports == nil,
              !options.query.listenersOnly, source.name == "sock_diag" else { return options.query }
        var listenersQuery = options.query
        listenersQuery.withCounters = false
        listenersQuery.listenersOnly = true
        let listeners = try source.sockets(listenersQuery)
        guard let filters = serverSideFilters(ephemeral: source.ephemeralRange.range, listeners: listeners,
                                              memory: memory, protocols: options.query.protocols) else {
            return options.query
        }
        var query = options.query
        query.ports = filters
        return query
    }

    /// The processes holding a socket, in pid order.
    public func processes(holding inode: UInt64) -> [ProcessRecord] {
        (owners[inode] ?? []).sorted().compactMap { processes[$0] }
    }
}

/// What earlier samples learnt of socket owners: searched inodes (found or not) are not
/// searched again until the cache is refreshed, every `lifetime` seconds.
public struct OwnerCache: Sendable {
    var owners = OwnerTable()
    var processes: [Int32: ProcessRecord] = [:]
    var searched = Set<UInt64>()
    var notes: [String] = []
    var blocked: [InspectionBlock: Int] = [:]
    var since: Double = 0
    public var lifetime: Double

    public init(lifetime: Double = 30) { self.lifetime = lifetime }

    /// The owners of `wanted`, searching /proc only for inodes not searched before.
    mutating func lookup(_ wanted: Set<UInt64>, now: Double, highFdBudget: Int? = nil,
                         namespaces: [UInt64: UInt64] = [:]) -> ProcessScan {
        if now - since >= lifetime {
            self = OwnerCache(lifetime: lifetime)
            since = now
        }
        let missing = wanted.subtracting(searched)
        if !missing.isEmpty {
            let scan = ProcessScanner.scan(inodes: missing, highFdBudget: highFdBudget, allHolders: true,
                                           namespaces: namespaces)
            for inode in missing {
                for pid in scan.owners[inode] ?? [] { owners.add(inode, pid) }
            }
            processes.merge(scan.processes) { a, _ in a }
            searched.formUnion(missing)
            for note in scan.notes where !notes.contains(note) { notes.append(note) }
            blocked.merge(scan.blocked) { max($0, $1) }
        }
        return ProcessScan(owners: owners, processes: processes, blocked: blocked, notes: notes)
    }
}

/// Fills each summary's process list from a scan (distinct pids, in pid order).
func attach(owners: OwnerTable, processes: [Int32: ProcessRecord], to ports: inout [PortSummary]) {
    for i in ports.indices {
        var pids = Set<Int32>()
        for inode in ports[i].ownerInodes {
            if let holders = owners[inode] { pids.formUnion(holders) }
        }
        ports[i].processes = pids.sorted().compactMap { processes[$0] }
    }
}

/// Per protocol, a kernel-side filter that drops exactly the connections `PortClassifier.decide`
/// puts on an outgoing row: local port inside the ephemeral range, peer port outside it and
/// not 0, no listener on the local port now or at the previous sample, no connection there
/// whose server side is remembered. Everything else is kept: listeners and unconnected
/// sockets (peer port 0), sockets on ports outside the range, connections between two
/// ephemeral ports. The kernel tests the filter before it fills a socket's attributes, so a
/// client socket then costs it only the hash walk.
///
/// nil (no filtering) when more than `maxClauses` port ranges would be needed: the kernel
/// runs the filter on every socket, clause by clause.
func serverSideFilters(ephemeral: ClosedRange<UInt16>, listeners: [SocketRecord], memory: SideMemory?,
                       protocols: Set<TransportProtocol>, maxClauses: Int = 64) -> [TransportProtocol: PortFilter]? {
    var kept: [TransportProtocol: Set<UInt16>] = [:]
    func keep(_ proto: TransportProtocol, _ port: UInt16) {
        if ephemeral.contains(port) { kept[proto, default: []].insert(port) }
    }
    for s in listeners where s.isListening { keep(s.proto, s.local.port) }
    if let memory {
        for key in memory.listeners.keys where key.role == .local { keep(key.proto, key.port) }
        for key in memory.sides.values where key.role == .local { keep(key.proto, key.port) }
    }
    var outside: [ClosedRange<UInt16>] = []
    if ephemeral.lowerBound > 0 { outside.append(0...(ephemeral.lowerBound - 1)) }
    if ephemeral.upperBound < UInt16.max { outside.append((ephemeral.upperBound + 1)...UInt16.max) }
    var filters: [TransportProtocol: PortFilter] = [:]
    for proto in protocols {
        var local = outside
        // Consecutive ports make one range.
        for port in (kept[proto] ?? []).sorted() {
            if let last = local.last, last.upperBound < UInt16.max, last.upperBound + 1 == port {
                local[local.count - 1] = last.lowerBound...port
            } else {
                local.append(port...port)
            }
        }
        guard local.count + 2 <= maxClauses else { return nil }
        filters[proto] = PortFilter(local: local, peer: [0...0, ephemeral])
    }
    return filters
}

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

    public init(query: SocketQuery = SocketQuery(), includeOutgoing: Bool = false,
                processes: ProcessAttribution = .owners, socketSource: SocketSourceChoice = .automatic) {
        self.query = query
        self.includeOutgoing = includeOutgoing
        self.processes = processes
        self.socketSource = socketSource
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
            let sockets = try SocketCollector(source: source, query: options.query).collect().value
            var classifier = PortClassifier(sockets: sockets, memory: memory)
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
                if ownerCache != nil {
                    scan = ownerCache!.lookup(wanted, now: Double(ts.tv_sec), highFdBudget: budget)
                } else {
                    scan = OwnerCollector(inodes: wanted, highFdBudget: budget).collect().value
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
    mutating func lookup(_ wanted: Set<UInt64>, now: Double, highFdBudget: Int? = nil) -> ProcessScan {
        if now - since >= lifetime {
            self = OwnerCache(lifetime: lifetime)
            since = now
        }
        let missing = wanted.subtracting(searched)
        if !missing.isEmpty {
            let scan = ProcessScanner.scan(inodes: missing, highFdBudget: highFdBudget, allHolders: true)
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

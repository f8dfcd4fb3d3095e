#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import Synchronization

/// One namespace's part of a view: its snapshot and, over a window, what happened in it.
public struct NamespacePart: Sendable {
    public var namespace: NetworkNamespace
    public var snapshot: PortSnapshot
    public var report: WindowReport?

    public init(namespace: NetworkNamespace, snapshot: PortSnapshot, report: WindowReport? = nil) {
        self.namespace = namespace
        self.snapshot = snapshot
        self.report = report
    }
}

/// Snapshots of several network namespaces taken together: each namespace is dumped through
/// its own sock_diag socket, and socket owners are found by one /proc walk for all of them
/// (socket inodes are unique across namespaces).
public struct NamespaceSnapshot: Sendable {
    public var parts: [NamespacePart]
    /// What could not be seen: namespaces not entered, processes not inspected.
    public var notes: [String]

    /// Snapshots of `namespaces` (discovered or resolved by the caller). A namespace that
    /// cannot be read becomes a note; the others are answered.
    public static func take(_ options: SnapshotOptions, namespaces: [NetworkNamespace],
                            sockets: NamespaceSockets) -> NamespaceSnapshot {
        let bare = { var o = options; o.processes = .none; return o }()
        let sources = sockets.sources(for: namespaces)
        let results = Mutex<[Int: Result<PortSnapshot, PortwatchError>]>([:])
        // Dumps of different namespaces are independent: both cores take turns.
        DispatchQueue.concurrentPerform(iterations: namespaces.count) { i in
            let r: Result<PortSnapshot, PortwatchError>
            switch sources[i] {
            case .success(let source): r = Result { () throws(PortwatchError) in try PortSnapshot.take(bare, source: source) }
            case .failure(let error): r = .failure(error)
            }
            results.withLock { $0[i] = r }
        }
        let got = results.withLock { $0 }
        var parts: [NamespacePart] = []
        var notes: [String] = []
        for (i, ns) in namespaces.enumerated() {
            switch got[i] {
            case .success(let snapshot)?: parts.append(NamespacePart(namespace: ns, snapshot: snapshot))
            case .failure(let error)?:
                sockets.forget(ns)
                notes.append(namespaceNote(ns, error))
            case nil: notes.append("network namespace \(ns.label) was not read")
            }
        }
        var cache: OwnerCache? = nil
        notes.append(contentsOf: attachOwners(&parts, processes: options.processes, cache: &cache))
        return NamespaceSnapshot(parts: parts, notes: notes)
    }

    /// Finds the owners of every part's sockets in one walk and fills the parts' process lists;
    /// returns the walk's notes.
    static func attachOwners(_ parts: inout [NamespacePart], processes: ProcessAttribution,
                             cache: inout OwnerCache?) -> [String] {
        guard processes != .none else { return [] }
        let scan: ProcessScan
        if processes == .full {
            scan = ProcessScanner.scan(inodes: nil)
        } else {
            var wanted = Set<UInt64>()
            var namespaces: [UInt64: UInt64] = [:]
            for part in parts {
                for p in part.snapshot.ports where p.role == .local || processes == .ownersThorough {
                    wanted.formUnion(p.ownerInodes)
                    for inode in p.ownerInodes { namespaces[inode] = part.namespace.inode }
                }
            }
            if wanted.isEmpty { return [] }
            let budget = processes == .ownersThorough ? nil : ProcessScanner.boundedHighFdBudget
            if cache != nil {
                var ts = timespec()
                clock_gettime(CLOCK_MONOTONIC, &ts)
                scan = cache!.lookup(wanted, now: Double(ts.tv_sec), highFdBudget: budget, namespaces: namespaces)
            } else {
                scan = ProcessScanner.scan(inodes: wanted, highFdBudget: budget, allHolders: true, namespaces: namespaces)
            }
        }
        for i in parts.indices {
            parts[i].snapshot.owners = scan.owners
            parts[i].snapshot.processes = scan.processes
            parts[i].snapshot.ownerProblem = scan.permissionProblem
            attach(owners: scan.owners, processes: scan.processes, to: &parts[i].snapshot.ports)
        }
        return scan.notes
    }
}

/// The note for a namespace that could not be read.
func namespaceNote(_ ns: NetworkNamespace, _ error: PortwatchError) -> String {
    let text = error.message
    return text.contains(ns.label) ? text : "network namespace \(ns.label): \(text)"
}

/// Successive samples of several namespaces (`top`, `--sample`, the daemon with `namespaces:`):
/// one `Sampler` per namespace (its own socket, destroy events and counters, so each
/// namespace's traffic is exact) and one shared owner search. With `rediscover`, namespaces
/// that appear later join (their first sample is their baseline) and vanished ones leave.
public final class NamespaceSampler {
    public let options: SnapshotOptions
    private let selection: NamespaceSelection
    private let capture: Bool
    private let detectors: DetectorSettings?
    private let closedConnections: Bool
    private let reuseQuietDumps: Bool
    private let includeOwn: Bool
    private let sockets: NamespaceSockets
    private var samplers: [UInt64: (NetworkNamespace, Sampler)] = [:]
    private var ownerCache: OwnerCache? = OwnerCache()
    /// Namespaces that could not be read at the last sample, with why.
    public private(set) var unreadable: [String] = []

    /// Resolves the selection (a bad `--netns` throws a usage error); nothing is sampled yet.
    /// `detectors` run in each namespace's own sampler (a scan of one namespace is its own).
    /// `reuseQuietDumps` as for `Sampler`: a namespace whose TCP counters did not move is not
    /// walked again (the daemon's choice: most containers are idle most seconds). Without
    /// `includeOwn`, portwatch's own namespace is left out (the daemon samples it apart).
    public init(options: SnapshotOptions, selection: NamespaceSelection, capture: Bool = false,
                detectors: DetectorSettings? = nil, closedConnections: Bool = true,
                reuseQuietDumps: Bool = false, includeOwn: Bool = true) throws(PortwatchError) {
        self.options = options
        self.reuseQuietDumps = reuseQuietDumps
        self.includeOwn = includeOwn
        self.selection = selection
        self.capture = capture
        self.detectors = detectors
        self.closedConnections = closedConnections
        self.sockets = NamespaceSockets(choice: options.socketSource)
        _ = try NamespaceDirectory.select(selection)
    }

    /// The namespaces being sampled now.
    public var namespaces: [NetworkNamespace] { samplers.values.map(\.0).sorted() }

    /// Dumps that reused a walk and dumps that walked, summed over the namespaces (`reuseQuietDumps`).
    public var dumpReuse: (replays: Int, walks: Int) {
        samplers.values.reduce((0, 0)) { sum, entry in
            let r = entry.1.dumpReuse ?? (0, 0)
            return (sum.0 + r.replays, sum.1 + r.walks)
        }
    }

    /// Takes the baseline of every namespace.
    @discardableResult
    public func start() throws(PortwatchError) -> NamespaceSnapshot {
        try step(baselineOnly: true)
    }

    /// Takes the next sample of every namespace: parts carry their window reports (a namespace
    /// that joined since the last sample has its baseline now and no report yet).
    public func sample() throws(PortwatchError) -> NamespaceSnapshot {
        try step(baselineOnly: false)
    }

    /// The last resolution of a list of names, and the /run/netns it was made from.
    private var listed: (directory: [Int], at: Double, found: NamespaceDirectory.Found)?

    /// The selection's namespaces now. A list of names is resolved again only when /run/netns
    /// changed (`ip netns add` or `delete` changes it) or 5 s passed: resolving 50 names costs
    /// about 200 system calls, at every sample.
    private func selectNamespaces() throws(PortwatchError) -> NamespaceDirectory.Found {
        guard case .list(let names) = selection, names.allSatisfy({ !$0.contains("/") && !$0.hasPrefix("pid:") }) else {
            return try NamespaceDirectory.select(selection)
        }
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        let now = Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
        let directory = NamespaceDirectory.namesState()
        if let listed, !directory.isEmpty, listed.directory == directory, now - listed.at < 5 { return listed.found }
        let found = try NamespaceDirectory.select(selection)
        listed = directory.isEmpty ? nil : (directory, now, found)
        return found
    }

    private func step(baselineOnly: Bool) throws(PortwatchError) -> NamespaceSnapshot {
        var found = try selectNamespaces()
        if !includeOwn { found.namespaces.removeAll(where: \.isOwn) }
        var notes = found.notes
        let current = Set(found.namespaces.map(\.inode))
        samplers = samplers.filter { current.contains($0.key) }
        var bare = options
        bare.processes = .none
        let fresh = found.namespaces.filter { samplers[$0.inode] == nil }
        let sources = sockets.sources(for: fresh)
        var joined = Set<UInt64>()
        for (ns, source) in zip(fresh, sources) {
            do throws(PortwatchError) {
                let sampler = try Sampler(options: bare, source: try source.get(), closedConnections: closedConnections,
                                          capture: capture, detectors: detectors, namespace: ns,
                                          reuseQuietDumps: reuseQuietDumps)
                samplers[ns.inode] = (ns, sampler)
                joined.insert(ns.inode)
            } catch {
                sockets.forget(ns)
                notes.append(namespaceNote(ns, error))
            }
        }
        let active = found.namespaces.compactMap { ns in
            samplers[ns.inode].map { SamplerTurn(namespace: ns, sampler: $0.1, fresh: baselineOnly || joined.contains(ns.inode)) }
        }
        let results = Mutex<[Int: Result<NamespacePart, PortwatchError>]>([:])
        // Each sampler has its own socket, events and counters: different namespaces sample
        // side by side on both cores (each dump walks the kernel's shared TCP hash table).
        DispatchQueue.concurrentPerform(iterations: active.count) { i in
            let (ns, sampler, fresh) = (active[i].namespace, active[i].sampler, active[i].fresh)
            let r = Result { () throws(PortwatchError) -> NamespacePart in
                if fresh { return NamespacePart(namespace: ns, snapshot: try sampler.start()) }
                let (snapshot, report) = try sampler.sample()
                return NamespacePart(namespace: ns, snapshot: snapshot, report: report)
            }
            results.withLock { $0[i] = r }
        }
        let got = results.withLock { $0 }
        var parts: [NamespacePart] = []
        for (i, turn) in active.enumerated() {
            let ns = turn.namespace
            switch got[i] {
            case .success(let part)?: parts.append(part)
            case .failure(let error)?:
                // Gone between discovery and the dump: it leaves now, and comes back as new.
                samplers[ns.inode] = nil
                sockets.forget(ns)
                notes.append(namespaceNote(ns, error))
            case nil: notes.append("network namespace \(ns.label) was not read")
            }
        }
        if parts.isEmpty && !found.namespaces.isEmpty, case .one = selection {
            throw PortwatchError.system(notes.first ?? "no network namespace could be read")
        }
        notes.append(contentsOf: NamespaceSnapshot.attachOwners(&parts, processes: options.processes, cache: &ownerCache))
        unreadable = notes
        return NamespaceSnapshot(parts: parts, notes: notes)
    }
}

/// One namespace's sampler and whether this step takes its baseline.
// @unchecked Sendable: a step hands each sampler to exactly one iteration of its parallel loop
// and waits for the loop to end, so no sampler is used by two threads at once.
private struct SamplerTurn: @unchecked Sendable {
    let namespace: NetworkNamespace
    let sampler: Sampler
    let fresh: Bool
}

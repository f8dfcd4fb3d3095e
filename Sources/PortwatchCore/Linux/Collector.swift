/// What a collector gathered and, when it saw only part of the truth, why: notes in the user's
/// words, never a crash and never a silent blank.
public struct Collected<Value: Sendable>: Sendable {
    public var value: Value
    public var notes: [String]

    public init(_ value: Value, notes: [String] = []) {
        self.value = value
        self.notes = notes
    }
}

/// One source of facts (sockets, socket owners, system counters). Each collector runs on its
/// own; one that sees only part reports it as a note and the others go on, as
/// node_exporter's collectors each report their own failure.
public protocol Collector: Sendable {
    associatedtype Value: Sendable
    /// Gathers once; throws only when nothing at all could be gathered.
    func collect() throws(PortwatchError) -> Collected<Value>
}

/// Sockets matching a query, from a socket source.
public struct SocketCollector: Collector {
    public var source: any SocketSource
    public var query: SocketQuery

    public init(source: any SocketSource, query: SocketQuery) {
        self.source = source
        self.query = query
    }

    public func collect() throws(PortwatchError) -> Collected<[SocketRecord]> {
        Collected(try source.sockets(query), notes: source.notes)
    }
}

/// The owners of sockets (`inodes`; nil for every socket), from /proc/PID/fd.
public struct OwnerCollector: Collector {
    public var inodes: Set<UInt64>?
    public var procRoot: String
    /// Fds above 1023 read in all (nil: every one); see `ProcessScanner.scan`.
    public var highFdBudget: Int?
    /// Socket inode → its network namespace's inode, whose processes are searched first; see
    /// `ProcessScanner.scan`.
    public var namespaces: [UInt64: UInt64] = [:]

    public init(inodes: Set<UInt64>?, procRoot: String = "/proc", highFdBudget: Int? = nil) {
        self.inodes = inodes
        self.procRoot = procRoot
        self.highFdBudget = highFdBudget
    }

    public func collect() -> Collected<ProcessScan> {
        let scan = ProcessScanner.scan(inodes: inodes, procRoot: procRoot, highFdBudget: highFdBudget, allHolders: true,
                                       namespaces: namespaces)
        return Collected(scan, notes: scan.notes)
    }
}

/// System-wide counters (/proc/net/snmp, netstat, snmp6).
public struct SystemCounterCollector: Collector {
    public var root: String

    public init(root: String = "/proc/net") { self.root = root }

    public func collect() -> Collected<SystemCounters> {
        var missing: [String] = []
        let counters = SystemCounters.read(root: root, missing: &missing)
        let notes = missing.isEmpty ? [] : ["\(missing.joined(separator: ", ")) unreadable: the system counters they hold (listen drops, resets, UDP errors) are missing"]
        return Collected(counters, notes: notes)
    }
}

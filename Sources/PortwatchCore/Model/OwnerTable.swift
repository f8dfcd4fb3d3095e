/// Socket inode → the pids holding it, compact: nearly every socket has one owner, so one pid
/// per inode is stored inline and only shared sockets (forked servers) get a list. A full walk
/// of 100,000 sockets would otherwise allocate an array per socket.
public struct OwnerTable: Sendable, Equatable, ExpressibleByDictionaryLiteral {
    private var single: [UInt64: Int32] = [:]
    private var shared: [UInt64: [Int32]] = [:]

    public init() {}

    public init(dictionaryLiteral elements: (UInt64, [Int32])...) {
        for (inode, pids) in elements { for pid in pids { add(inode, pid) } }
    }

    /// Makes room for about `count` sockets.
    public mutating func reserve(_ count: Int) { single.reserveCapacity(count) }

    /// Records that `pid` holds `inode`; true when the socket had no owner before.
    @inline(__always)
    @discardableResult
    public mutating func add(_ inode: UInt64, _ pid: Int32) -> Bool {
        // Shared lists stay in pid order, so a table does not depend on which part of a parallel
        // walk found an owner first.
        if let list = shared[inode] {
            if !list.contains(pid) { shared[inode]!.insert(pid, at: list.firstIndex { $0 > pid } ?? list.count) }
            return false
        }
        if let first = single[inode] {
            if first != pid {
                single[inode] = nil
                shared[inode] = first < pid ? [first, pid] : [pid, first]
            }
            return false
        }
        single[inode] = pid
        return true
    }

    /// The pids holding `inode`, in pid order; nil when none.
    public subscript(_ inode: UInt64) -> [Int32]? {
        if let pid = single[inode] { return [pid] }
        return shared[inode]
    }

    public var count: Int { single.count + shared.count }
    public var isEmpty: Bool { single.isEmpty && shared.isEmpty }

    /// Adds every owner of another table (the parts of a parallel walk).
    public mutating func merge(_ other: OwnerTable) {
        if isEmpty {
            self = other
            return
        }
        single.reserveCapacity(single.count + other.single.count)
        for (inode, pid) in other.single { add(inode, pid) }
        for (inode, pids) in other.shared { for pid in pids { add(inode, pid) } }
    }

    /// Adds every owner of another table; returns how many of its sockets had no owner here.
    @discardableResult
    mutating func mergeCountingNew(_ other: OwnerTable) -> Int {
        var new = 0
        for (inode, pid) in other.single where add(inode, pid) { new += 1 }
        for (inode, pids) in other.shared {
            for pid in pids where add(inode, pid) { new += 1 }
        }
        return new
    }

    public static func == (a: OwnerTable, b: OwnerTable) -> Bool {
        guard a.count == b.count else { return false }
        for (inode, pid) in a.single where b[inode] != [pid] { return false }
        for (inode, pids) in a.shared where b[inode] != pids { return false }
        return true
    }
}

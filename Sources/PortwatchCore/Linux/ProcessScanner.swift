#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Dispatch
import Synchronization

/// Finds which processes hold which sockets by walking /proc/PID/fd, without Foundation and
/// without allocating per fd.
public enum ProcessScanner {
    /// fds below this are tried by number in the targeted first pass: listeners are usually opened
    /// early in a process's life, and a readlink of a known name is cheaper than listing the directory.
    static let lowFdLimit: Int32 = 16
    /// Pass 2 of a targeted walk reads fds below this; pass 3 the rest, only for the sockets
    /// still without an owner.
    static let midFdLimit: Int32 = 1024
    /// The fds above 1023 a bounded targeted walk (`ports`, `check`, `top`) reads in all: every
    /// process with up to ~17,000 open files when it is the only busy one, and about a tenth of
    /// a full walk of a host holding 100,000 connection sockets.
    public static let boundedHighFdBudget = 16_384

    /// Maps socket inodes to the processes holding them; `wanted == nil` maps every socket of every
    /// process, otherwise the walk stops as soon as each wanted inode has one owner.
    ///
    /// A targeted scan with `allHolders` reports every process holding a wanted socket (a
    /// pre-forking server's workers), above fd 1023 too within `highFdBudget`; without it, the
    /// first owner found of each. A full scan reports all of them.
    ///
    /// A targeted scan reads low fds first and goes further only for the sockets still unowned,
    /// smallest fd tables first, so the tens of thousands of connection fds of a busy process are
    /// read only when a wanted socket may be among them (a listener opened after 1,000 others).
    /// `highFdBudget` bounds how many fds above 1023 it reads in all (nil: every one): a socket
    /// that no visible process holds (a kernel socket, a hidden process's) would otherwise cost a
    /// walk of every busy process on each run; when the budget ends the search, a note says so.
    /// `allHolders` (`who`, `kill`) keeps reading every process's fds up to 1023 after each socket
    /// has an owner, so a socket shared after fork() on a higher fd names every process holding it.
    /// `namespaces` (wanted socket inode → the nsfs inode of its network namespace) puts the
    /// busy processes living in the namespaces of the unowned sockets first in the search above
    /// fd 1023, so `ports --netns NS` names a container's busy server although the host has
    /// busier processes.
    public static func scan(inodes wanted: Set<UInt64>?, procRoot: String = "/proc", highFdBudget: Int? = nil,
                            allHolders: Bool = false, namespaces: [UInt64: UInt64] = [:]) -> ProcessScan {
        if let wanted, wanted.isEmpty { return ProcessScan() }
        if wanted == nil { return fullScan(procRoot: procRoot, parts: 2) }
        let procfd: Int32
        do {
            procfd = try openProcRoot(procRoot)
        } catch {
            return ProcessScan(notes: ["cannot read \(procRoot): \(error.description)"])
        }
        defer { close(procfd) }

        var walk = FdWalk(procfd: procfd, wanted: wanted)
        walk.allHolders = allHolders
        walk.socketNamespaces = namespaces
        walk.targetedScan(listPids(procfd: procfd), highFdBudget: highFdBudget)
        var scan = finish(owners: walk.owners, ownerPids: walk.ownerPids, refusals: walk.refusals,
                          unowned: walk.remaining > 0, procfd: procfd, procRoot: procRoot)
        if walk.budgetExhausted {
            scan.addNote("\(walk.remaining) socket\(walk.remaining == 1 ? "" : "s") without a visible owner: the highest file descriptors of the busiest processes were not searched (portwatch who PORT searches them all)")
        }
        return scan
    }

    /// The processes under the proc root, listed once: the parts of a full scan split this one
    /// list, so a process list that changes during the walk cannot make a part skip a pid.
    public static func listPids(procRoot: String = "/proc") -> [Int32] {
        guard let procfd = try? openProcRoot(procRoot) else { return [] }
        defer { close(procfd) }
        return listPids(procfd: procfd)
    }

    /// What one part of a full scan found.
    public struct FullScanPart: Sendable {
        var owners = OwnerTable()
        var ownerPids: [Int32] = []
        var refusals: [FdWalk.Refusal] = []
    }

    /// Every fd of the processes in `pids`: parts run on threads of their own and are merged by
    /// `finishFullScan`.
    public static func fullScanPart(pids: some Sequence<Int32>, procRoot: String = "/proc") -> FullScanPart {
        guard let procfd = try? openProcRoot(procRoot) else { return FullScanPart() }
        defer { close(procfd) }
        var walk = FdWalk(procfd: procfd, wanted: nil)
        walk.fullScan(pids)
        return FullScanPart(owners: walk.owners, ownerPids: walk.ownerPids, refusals: walk.refusals)
    }

    /// Part `index` of `parts` of one pid list: every `parts`-th pid, so the parts get processes
    /// of every age (old daemons, busy clients) and take about the same time.
    public static func slice(_ pids: [Int32], part index: Int, of parts: Int) -> [Int32] {
        guard parts > 0, index >= 0, index < parts else { return [] }
        return stride(from: index, to: pids.count, by: parts).map { pids[$0] }
    }

    /// Merges the parts of a full scan and reads the owners' details.
    public static func finishFullScan(_ parts: [FullScanPart], procRoot: String = "/proc") -> ProcessScan {
        var owners = OwnerTable()
        var pids: [Int32] = []
        var refusals: [FdWalk.Refusal] = []
        // Largest first: merging into it moves the fewest entries.
        for part in parts.sorted(by: { $0.owners.count > $1.owners.count }) {
            owners.merge(part.owners)
            pids.append(contentsOf: part.ownerPids)
            refusals.append(contentsOf: part.refusals)
        }
        let procfd: Int32
        do {
            procfd = try openProcRoot(procRoot)
        } catch {
            return ProcessScan(owners: owners, notes: ["cannot read \(procRoot): \(error.description)"])
        }
        defer { close(procfd) }
        return finish(owners: owners, ownerPids: pids, refusals: refusals, unowned: true, procfd: procfd, procRoot: procRoot)
    }

    /// A full scan split over `parts` threads (the walk is all system calls: on two cores two
    /// walkers take about half the time).
    static func fullScan(procRoot: String, parts: Int) -> ProcessScan {
        let pids = listPids(procRoot: procRoot)
        if pids.isEmpty, (try? openProcRoot(procRoot)).map({ close($0) }) == nil {
            return ProcessScan(notes: ["cannot read \(procRoot)"])
        }
        let results = Mutex<[FullScanPart]>([])
        DispatchQueue.concurrentPerform(iterations: parts) { i in
            let part = fullScanPart(pids: slice(pids, part: i, of: parts), procRoot: procRoot)
            results.withLock { $0.append(part) }
        }
        return finishFullScan(results.withLock { $0 }, procRoot: procRoot)
    }

    static func openProcRoot(_ procRoot: String) throws(SystemCallError) -> Int32 {
        try syscallRetrying("open(\(procRoot))") { open(procRoot, O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
    }

    /// Reads the owners' details and says what was hidden. `unowned`: some sockets may lack an
    /// owner, so a proc mount that hides processes from the listing is worth a note.
    private static func finish(owners: OwnerTable, ownerPids: [Int32], refusals: [FdWalk.Refusal], unowned: Bool,
                               procfd: Int32, procRoot: String) -> ProcessScan {
        var scan = ProcessScan(owners: owners, unreadableProcesses: Set(refusals.map(\.pid)).count)
        var users: [UInt32: String] = [:]
        for pid in ownerPids where scan.processes[pid] == nil {
            if let record = readRecord(pid: pid, procfd: procfd, users: &users) {
                scan.processes[pid] = record
            }
        }
        // A targeted walk that found every owner has a complete answer: processes it could not
        // read hid nothing it was asked for, so they are not worth a note.
        if !unowned { return scan }
        let access = ProcAccess(procfd: procfd, procRoot: procRoot)
        var seen = Set<Int32>()
        for refusal in refusals where seen.insert(refusal.pid).inserted {
            scan.blocked[access.classify(pid: refusal.pid, errno: refusal.errno, procfd: procfd), default: 0] += 1
        }
        if unowned, access.listingIsHidden, let option = access.hidepid {
            scan.blocked[.hiddenByProcMount(option), default: 0] += 0
        }
        for block in scan.blocked.keys.sorted() {
            scan.addNote(block.explanation(count: scan.blocked[block] ?? 0))
        }
        return scan
    }

    /// Name, command line, user, unit and container of one process; nil when it does not exist.
    public static func record(pid: Int32, procRoot: String = "/proc") -> ProcessRecord? {
        guard let procfd = try? openProcRoot(procRoot) else { return nil }
        defer { close(procfd) }
        var users: [UInt32: String] = [:]
        return readRecord(pid: pid, procfd: procfd, users: &users)
    }
}

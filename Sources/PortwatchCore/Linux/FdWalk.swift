#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Dispatch
import Synchronization

/// One walk over /proc/PID/fd directories: the result so far and the buffers reused for every fd.
struct FdWalk: ~Copyable {
    /// A process whose fds the kernel refused to show, and the errno it gave.
    struct Refusal: Sendable {
        var pid: Int32
        var errno: Int32
    }

    let procfd: Int32
    let targeted: Bool
    let wanted: Set<UInt64>
    /// Wanted inodes without an owner yet; the targeted walk ends at zero.
    var remaining: Int
    var owners = OwnerTable()
    /// Every pid that owns a recorded socket, once: whose details to read.
    var ownerPids: [Int32] = []
    /// Processes the kernel refused to show (EACCES/EPERM), once each per pass.
    var refusals: [Refusal] = []
    /// Pass 3 stopped at its budget with sockets still unowned.
    var budgetExhausted = false
    /// Keep reading fds below the huge-table limit after every wanted socket has an owner, so a
    /// socket shared after fork() names every process holding it (`who`, `kill`), not the first.
    var allHolders = false
    /// The targeted walk may stop: every wanted socket has an owner and not every holder is wanted.
    var done: Bool { remaining == 0 && !allHolders }
    /// Wanted socket inode → its network namespace (nsfs inode), when the caller knows them:
    /// pass 3 reads first the processes living in the namespaces of the sockets still unowned.
    var socketNamespaces: [UInt64: UInt64] = [:]
    /// Whether fd directories report their fd count as st_size, letting pass 1 skip listing them.
    let sizeIsFdCount: Bool

    /// "PID/fd" relative to the proc root, and fd-number names in pass 1.
    let path: UnsafeMutablePointer<CChar>
    /// A link target; "socket:[18446744073709551615]" is 29 bytes, longer targets are not sockets.
    let link: UnsafeMutablePointer<CChar>
    static let pathCapacity = 32
    static let linkCapacity = 64

    init(procfd: Int32, wanted: Set<UInt64>?, sizeIsFdCount: Bool? = nil) {
        self.procfd = procfd
        self.targeted = wanted != nil
        self.wanted = wanted ?? []
        self.remaining = wanted?.count ?? -1
        self.sizeIsFdCount = sizeIsFdCount ?? Self.sizeIsFdCount(procfd: procfd)
        path = .allocate(capacity: Self.pathCapacity)
        link = .allocate(capacity: Self.linkCapacity)
    }

    /// Whether this proc root's fd directories report their number of open fds as st_size (procfs
    /// since Linux 6.2), checked on our own fd directory: a directory elsewhere, or an older
    /// kernel, says something else. A concurrent open/close may spoil a try; a few are made.
    static func sizeIsFdCount(procfd: Int32) -> Bool {
        for _ in 0..<3 {
            let dfd = openat(procfd, "self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            if dfd < 0 { return false }
            var st = stat()
            guard fstat(dfd, &st) == 0, let dir = fdopendir(dfd) else {
                close(dfd)
                return false
            }
            var count = 0
            while let entry = readdir(dir) {
                if ProcessScanner.parseDecimal(UnsafeRawPointer(entry) + ProcessScanner.direntNameOffset) != nil {
                    count += 1
                }
            }
            closedir(dir)  // also closes dfd, which both counts included
            if st.st_size > 0 && Int(st.st_size) == count { return true }
        }
        return false
    }

    deinit {
        path.deallocate()
        link.deallocate()
    }

    /// Every fd of every process.
    mutating func fullScan(_ pids: some Sequence<Int32>) {
        for pid in pids {
            let dfd = openFdDir(pid)
            if dfd < 0 { continue }
            var st = stat()
            if sizeIsFdCount && fstat(dfd, &st) == 0 && st.st_size > 0 {
                probeDense(dfd, pid: pid, count: Int(st.st_size))
            } else {
                listFds(dfd, pid: pid, from: 0)
            }
        }
    }

    /// Reads a process's links by number from 0 until all `count` open fds are seen, skipping
    /// the directory listing (a tenth of a full walk's cost). fd tables are dense (the kernel
    /// hands out the lowest free number); when holes pile up, the rest is listed instead.
    /// Consumes `dfd`.
    mutating func probeDense(_ dfd: Int32, pid: Int32, count: Int) {
        var present = 0
        var misses = 0
        let allowedMisses = max(64, count / 4)
        var fd: Int32 = 0
        while present < count {
            if misses > allowedMisses {
                listFds(dfd, pid: pid, from: fd)
                return
            }
            let n = ProcessScanner.writeDecimal(fd, path)
            path[n] = 0
            let got = readlinkat(dfd, path, link, Self.linkCapacity)
            fd += 1
            if got <= 0 {
                let code = errno
                if got < 0 && (code == EACCES || code == EPERM) {
                    refusals.append(Refusal(pid: pid, errno: code))
                    break
                }
                misses += 1
                continue
            }
            present += 1
            if got >= Self.linkCapacity { continue }
            if let inode = ProcessScanner.socketInode(UnsafeRawBufferPointer(start: link, count: got)) {
                found(inode, pid: pid)
            }
        }
        close(dfd)
    }

    /// Pass 1 tries the low fds of every process by name, all of them: it is cheap, and a
    /// pre-forking server's workers share the master's low-fd listener, so `who` names them all.
    /// Pass 2 reads fds 16..<1024 of the processes that may have more, smallest fd tables first;
    /// pass 3 the fds from 1024 up of the processes that have them, for exactly the sockets still
    /// unowned, within `highFdBudget` fds in all (nil: no limit). Both end as soon as every wanted
    /// inode has an owner, so a listener found low never costs a walk of a busy process's
    /// connection fds; the budget bounds what a socket nobody visible holds (a kernel socket, a
    /// hidden process's) costs.
    mutating func targetedScan(_ pids: [Int32], highFdBudget: Int? = nil) {
        var needListing: [(pid: Int32, fds: Int)] = []
        for pid in pids {
            let dfd = openFdDir(pid)
            if dfd < 0 { continue }
            let more = probeLowFds(dfd, pid: pid)
            var st = stat()
            let fds = sizeIsFdCount && fstat(dfd, &st) == 0 ? Int(st.st_size) : 0
            close(dfd)
            if more { needListing.append((pid, fds)) }
        }
        if done { return }
        needListing.sort { $0.fds < $1.fds }
        var big: [(pid: Int32, fds: Int)] = []
        for (pid, fds) in needListing {
            let dfd = openFdDir(pid)
            if dfd < 0 { continue }
            if fds > Int(ProcessScanner.midFdLimit) {
                // A huge fd table: read the middle range by name instead of listing it all.
                probeRange(dfd, pid: pid, ProcessScanner.lowFdLimit..<ProcessScanner.midFdLimit)
                close(dfd)
                big.append((pid, fds))
            } else {
                listFds(dfd, pid: pid, from: ProcessScanner.lowFdLimit)
            }
            if done { return }
        }
        // Huge fd tables (connection-heavy processes) are searched above the mid limit only for
        // sockets still unowned, even when every holder is wanted.
        if remaining == 0 || big.isEmpty { return }
        // Within the budget, the processes living in the namespaces of the unowned sockets
        // first (a container's busy server holds its container's sockets; the host's busy
        // processes are not worth the budget when the question is about the container), then
        // smallest tables first; a table too big for what is left is skipped, not the end of
        // the search. With `allHolders` every chosen one is read even once each socket has an
        // owner, so a socket shared above fd 1023 after fork() names all its holders.
        if !socketNamespaces.isEmpty { big = namespacesFirst(big) }
        var chosen: [Int32] = []
        var spent = 0
        for (pid, fds) in big {
            let high = fds - Int(ProcessScanner.midFdLimit)
            if let highFdBudget, spent + high > highFdBudget {
                budgetExhausted = true
                continue
            }
            spent += high
            chosen.append(pid)
        }
        searchHighFds(chosen)
        budgetExhausted = budgetExhausted && remaining > 0
    }

    /// Lists the fds above the mid limit of `pids` on two threads (the walk is all system calls:
    /// two walkers on two cores take about half the time), each with a walk of its own, and
    /// merges what they found.
    mutating func searchHighFds(_ pids: [Int32]) {
        if pids.isEmpty { return }
        let sought = allHolders ? wanted : wanted.filter { owners[$0] == nil }
        let procfd = procfd, sizeIsFdCount = sizeIsFdCount, allHolders = allHolders
        let parts = Mutex<[ProcessScanner.FullScanPart]>([])
        let threads = pids.count > 1 ? 2 : 1
        DispatchQueue.concurrentPerform(iterations: threads) { i in
            var walk = FdWalk(procfd: procfd, wanted: sought, sizeIsFdCount: sizeIsFdCount)
            walk.allHolders = allHolders
            for pid in ProcessScanner.slice(pids, part: i, of: threads) {
                let dfd = walk.openFdDir(pid)
                if dfd >= 0 { walk.listFds(dfd, pid: pid, from: ProcessScanner.midFdLimit) }
                if walk.remaining == 0 && !allHolders { break }
            }
            let part = ProcessScanner.FullScanPart(owners: walk.owners, ownerPids: walk.ownerPids, refusals: walk.refusals)
            parts.withLock { $0.append(part) }
        }
        // OwnerTable keeps shared owners in pid order: the merge does not depend on which thread
        // finished first. A pid listed twice is read once when details are read.
        for part in parts.withLock({ $0 }) {
            remaining -= owners.mergeCountingNew(part.owners)
            ownerPids.append(contentsOf: part.ownerPids)
            refusals.append(contentsOf: part.refusals)
        }
    }

    /// `big` (smallest tables first) reordered: the processes of the namespaces whose sockets are
    /// still unowned come first, round by round — each such namespace's smallest table, then
    /// each one's second, ... — so with several namespaces asked about (`--all-namespaces`)
    /// every one gets its likeliest owner read before any gets a second; then the others.
    mutating func namespacesFirst(_ big: [(pid: Int32, fds: Int)]) -> [(pid: Int32, fds: Int)] {
        var unowned = Set<UInt64>()
        for inode in wanted where owners[inode] == nil {
            if let ns = socketNamespaces[inode] { unowned.insert(ns) }
        }
        var byNamespace: [UInt64: [(pid: Int32, fds: Int)]] = [:]
        var others: [(pid: Int32, fds: Int)] = []
        for process in big {
            if let ns = netnsInode(process.pid), unowned.contains(ns) {
                byNamespace[ns, default: []].append(process)
            } else {
                others.append(process)
            }
        }
        var ordered: [(pid: Int32, fds: Int)] = []
        for round in 0... {
            let layer = byNamespace.values.compactMap { round < $0.count ? $0[round] : nil }.sorted { $0.fds < $1.fds }
            if layer.isEmpty { break }
            ordered += layer
        }
        return ordered + others
    }

    /// The inode of a process's network namespace; nil when it is gone or not ours to read.
    mutating func netnsInode(_ pid: Int32) -> UInt64? {
        var n = ProcessScanner.writeDecimal(pid, path)
        for c in "/ns/net".utf8 {
            path[n] = CChar(bitPattern: c)
            n += 1
        }
        path[n] = 0
        var st = stat()
        return fstatat(procfd, path, &st, 0) == 0 ? UInt64(st.st_ino) : nil
    }

    /// Reads the links numbered in `range` by name (absent fds fail fast with ENOENT).
    mutating func probeRange(_ dfd: Int32, pid: Int32, _ range: Range<Int32>) {
        for fd in range {
            let n = ProcessScanner.writeDecimal(fd, path)
            path[n] = 0
            let got = readlinkat(dfd, path, link, Self.linkCapacity)
            if got <= 0 || got >= Self.linkCapacity { continue }
            if let inode = ProcessScanner.socketInode(UnsafeRawBufferPointer(start: link, count: got)) {
                found(inode, pid: pid)
                if done { return }
            }
        }
    }

    /// Opens PID/fd under the proc root; -1 when the process is gone or not ours to read.
    mutating func openFdDir(_ pid: Int32) -> Int32 {
        var n = ProcessScanner.writeDecimal(pid, path)
        for c in "/fd".utf8 {
            path[n] = CChar(bitPattern: c)
            n += 1
        }
        path[n] = 0
        do {
            return try syscallRetrying("openat(PID/fd)") { openat(procfd, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
        } catch {
            // ENOENT/ESRCH: exited since the listing, silently skipped. EACCES/EPERM: refused
            // (why is worked out later, for the note), counted so the caller can say so.
            if error.errno == EACCES || error.errno == EPERM { refusals.append(Refusal(pid: pid, errno: error.errno)) }
            return -1
        }
    }

    /// Reads links 0..<lowFdLimit by name; true when the process may hold fds beyond them.
    mutating func probeLowFds(_ dfd: Int32, pid: Int32) -> Bool {
        var present = 0
        for fd in 0..<ProcessScanner.lowFdLimit {
            let n = ProcessScanner.writeDecimal(fd, path)
            path[n] = 0
            let got = readlinkat(dfd, path, link, Self.linkCapacity)
            if got <= 0 {
                // EACCES: the directory lists but its links are closed to us (a protected
                // process, PID 1 in some sandboxes): say so, and do not list it again.
                let code = errno
                if got < 0 && (code == EACCES || code == EPERM) {
                    refusals.append(Refusal(pid: pid, errno: code))
                    return false
                }
                continue  // no such fd (ENOENT), or the process just exited
            }
            present += 1
            if got >= Self.linkCapacity { continue }  // truncated: a long path, not a socket
            if let inode = ProcessScanner.socketInode(UnsafeRawBufferPointer(start: link, count: got)) {
                found(inode, pid: pid)
            }
        }
        // Since Linux 6.2 procfs reports the number of open fds as the fd directory's size: when
        // they were all low, listing the directory would find nothing new. Older kernels say 0.
        if sizeIsFdCount {
            var st = stat()
            if fstat(dfd, &st) == 0 && st.st_size > 0 && Int(st.st_size) == present { return false }
        }
        return true
    }

    /// Lists the fd directory `dfd` (consumed) and reads the links numbered `first` and up.
    mutating func listFds(_ dfd: Int32, pid: Int32, from first: Int32) {
        guard let dir = fdopendir(dfd) else {
            close(dfd)
            return
        }
        defer { closedir(dir) }
        // readdir ends early (nil) if the process exits while listing: what was read still counts.
        while let entry = readdir(dir) {
            let name = UnsafeRawPointer(entry) + ProcessScanner.direntNameOffset
            // "." and ".." are not numbers; fds below `first` were read in pass 1.
            guard let fd = ProcessScanner.parseDecimal(name), fd >= first else { continue }
            let got = readlinkat(dfd, name.assumingMemoryBound(to: CChar.self), link, Self.linkCapacity)
            if got <= 0 || got >= Self.linkCapacity { continue }
            if let inode = ProcessScanner.socketInode(UnsafeRawBufferPointer(start: link, count: got)) {
                found(inode, pid: pid)
                if done { return }
            }
        }
    }

    @inline(__always)
    mutating func found(_ inode: UInt64, pid: Int32) {
        if targeted && !wanted.contains(inode) { return }
        if owners.add(inode, pid) && targeted { remaining -= 1 }
        // Processes are walked one at a time, so within a pass a pid already seen is the last one
        // added; a pid met again in pass 2 is deduplicated when details are read.
        if ownerPids.last != pid { ownerPids.append(pid) }
    }
}

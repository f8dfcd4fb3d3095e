#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Dispatch
import Synchronization

/// Socket inode → owning processes, as read from /proc/PID/fd, with the owners' details.
public struct ProcessScan: Sendable {
    /// Socket inode → pids holding it, each once, in the order found (ascending in a full scan).
    public var owners: OwnerTable
    /// Details of the pids in `owners`; a pid that exited before its details were read has none.
    public var processes: [Int32: ProcessRecord]
    /// Processes whose /proc/PID/fd could not be opened (EACCES): their sockets stay unattributed.
    public var unreadableProcesses: Int
    /// Why the answer may be incomplete, in words for the user; nil when nothing was hidden.
    public var note: String?

    public init(owners: OwnerTable = [:], processes: [Int32: ProcessRecord] = [:],
                unreadableProcesses: Int = 0, note: String? = nil) {
        self.owners = owners
        self.processes = processes
        self.unreadableProcesses = unreadableProcesses
        self.note = note
    }

    /// The known processes holding `inode`, in the order they were found.
    public func processes(owning inode: UInt64) -> [ProcessRecord] {
        (owners[inode] ?? []).compactMap { processes[$0] }
    }
}

/// Finds which processes hold which sockets by walking /proc/PID/fd, without Foundation and
/// without allocating per fd.
public enum ProcessScanner {
    /// fds below this are tried by number in the targeted first pass: listeners are usually opened
    /// early in a process's life, and a readlink of a known name is cheaper than listing the directory.
    static let lowFdLimit: Int32 = 16
    /// The bounded (not thorough) targeted walk reads no fd at or above this.
    static let midFdLimit: Int32 = 1024

    /// Maps socket inodes to the processes holding them; `wanted == nil` maps every socket of every
    /// process, otherwise the walk stops as soon as each wanted inode has one owner.
    ///
    /// A targeted scan reports every process holding a wanted socket on a low fd (a pre-forking
    /// server's workers), but only the first owner found of a socket shared on high fds; a full
    /// scan reports all of them.
    ///
    /// A targeted scan that is not `thorough` reads only fds below 1024 beyond pass 1: enough for
    /// listeners (opened early in a process's life), and it never walks the tens of thousands of
    /// connection fds a busy server or client holds. `who` and `kill` scan thoroughly.
    public static func scan(inodes wanted: Set<UInt64>?, procRoot: String = "/proc", thorough: Bool = true) -> ProcessScan {
        if let wanted, wanted.isEmpty { return ProcessScan() }
        if wanted == nil { return fullScan(procRoot: procRoot, parts: 2) }
        let procfd = open(procRoot, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if procfd < 0 {
            let code = errno
            return ProcessScan(note: "cannot read \(procRoot): \(String(cString: strerror(code)))")
        }
        defer { close(procfd) }

        var walk = FdWalk(procfd: procfd, wanted: wanted)
        let pids = listPids(procfd: procfd)
        walk.targetedScan(pids, thorough: thorough)
        var scan = finish(owners: walk.owners, ownerPids: walk.ownerPids, unreadable: walk.unreadable, procfd: procfd)
        if !thorough && walk.remaining > 0 && walk.truncated && scan.note == nil {
            scan.note = "some owners were not found among file descriptors below 1024 (portwatch who PORT searches all)"
        }
        return scan
    }

    /// What one part of a full scan found.
    public struct FullScanPart: Sendable {
        var owners = OwnerTable()
        var ownerPids: [Int32] = []
        var unreadable = 0
    }

    /// Every fd of the processes whose position in the pid list is `index` modulo `parts`:
    /// parts run on threads of their own and are merged by `finishFullScan`.
    public static func fullScanPart(_ index: Int, of parts: Int, procRoot: String = "/proc") -> FullScanPart {
        let procfd = open(procRoot, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if procfd < 0 { return FullScanPart() }
        defer { close(procfd) }
        var walk = FdWalk(procfd: procfd, wanted: nil)
        let pids = listPids(procfd: procfd)
        walk.fullScan(pids.enumerated().filter { $0.offset % parts == index }.map(\.element))
        return FullScanPart(owners: walk.owners, ownerPids: walk.ownerPids, unreadable: walk.unreadable)
    }

    /// Merges the parts of a full scan and reads the owners' details.
    public static func finishFullScan(_ parts: [FullScanPart], procRoot: String = "/proc") -> ProcessScan {
        var owners = OwnerTable()
        var pids: [Int32] = []
        var unreadable = 0
        // Largest first: merging into it moves the fewest entries.
        for part in parts.sorted(by: { $0.owners.count > $1.owners.count }) {
            owners.merge(part.owners)
            pids.append(contentsOf: part.ownerPids)
            unreadable += part.unreadable
        }
        let procfd = open(procRoot, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if procfd < 0 { return ProcessScan(owners: owners, note: "cannot read \(procRoot)") }
        defer { close(procfd) }
        return finish(owners: owners, ownerPids: pids, unreadable: unreadable, procfd: procfd)
    }

    /// A full scan split over `parts` threads (the walk is all system calls: on two cores two
    /// walkers take about half the time).
    static func fullScan(procRoot: String, parts: Int) -> ProcessScan {
        let results = Mutex<[FullScanPart]>([])
        DispatchQueue.concurrentPerform(iterations: parts) { i in
            let part = fullScanPart(i, of: parts, procRoot: procRoot)
            results.withLock { $0.append(part) }
        }
        return finishFullScan(results.withLock { $0 }, procRoot: procRoot)
    }

    private static func finish(owners: OwnerTable, ownerPids: [Int32], unreadable: Int, procfd: Int32) -> ProcessScan {
        var scan = ProcessScan(owners: owners, unreadableProcesses: unreadable)
        var users: [UInt32: String] = [:]
        for pid in ownerPids where scan.processes[pid] == nil {
            if let record = readRecord(pid: pid, procfd: procfd, users: &users) {
                scan.processes[pid] = record
            }
        }
        if unreadable > 0 {
            scan.note = "\(unreadable) process\(unreadable == 1 ? "" : "es") could not be inspected (other users' or protected) — needs root or CAP_SYS_PTRACE"
        }
        return scan
    }

    /// Name, command line, user, unit and container of one process; nil when it does not exist.
    public static func record(pid: Int32, procRoot: String = "/proc") -> ProcessRecord? {
        let procfd = open(procRoot, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if procfd < 0 { return nil }
        defer { close(procfd) }
        var users: [UInt32: String] = [:]
        return readRecord(pid: pid, procfd: procfd, users: &users)
    }

    // MARK: - Process details

    static func readRecord(pid: Int32, procfd: Int32, users: inout [UInt32: String]) -> ProcessRecord? {
        guard pid > 0 else { return nil }
        let dir = openat(procfd, String(pid), O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dir < 0 { return nil }
        defer { close(dir) }
        // comm is the one file every live process has; without it the process is gone.
        guard let comm = readFileBytes(at: dir, "comm", limit: 256) else { return nil }
        let name = String(decoding: comm.last == UInt8(ascii: "\n") ? comm.dropLast() : comm[...], as: UTF8.self)

        var command = commandLine(readFileBytes(at: dir, "cmdline") ?? [])
        if command.isEmpty { command = "[\(name)]" }  // kernel threads have no command line

        let uid = readFileBytes(at: dir, "status", limit: 64 << 10).flatMap(realUid(status:))
        var user: String?
        if let uid {
            if let cached = users[uid] {
                user = cached
            } else {
                let looked = userName(uid: uid) ?? String(uid)
                users[uid] = looked
                user = looked
            }
        }

        var unit: String?
        var container: String?
        if let cgroup = readFileBytes(at: dir, "cgroup", limit: 64 << 10) {
            (unit, container) = parseCgroup(String(decoding: cgroup, as: UTF8.self))
        }
        return ProcessRecord(pid: pid, name: name, user: user, uid: uid, command: command,
                             unit: unit, container: container)
    }

    /// /proc/PID/cmdline's NUL-separated arguments joined by spaces.
    static func commandLine(_ bytes: [UInt8]) -> String {
        var end = bytes.count
        while end > 0 && bytes[end - 1] == 0 { end -= 1 }
        var joined = Array(bytes[0..<end])
        for i in joined.indices where joined[i] == 0 { joined[i] = UInt8(ascii: " ") }
        return String(decoding: joined, as: UTF8.self)
    }

    /// The real uid: the first number on the `Uid:` line of /proc/PID/status.
    static func realUid(status: [UInt8]) -> UInt32? {
        let key = Array("Uid:".utf8)
        var lineStart = 0
        while lineStart < status.count {
            var lineEnd = lineStart
            while lineEnd < status.count && status[lineEnd] != UInt8(ascii: "\n") { lineEnd += 1 }
            if lineEnd - lineStart > key.count && status[lineStart..<lineStart + key.count].elementsEqual(key) {
                var i = lineStart + key.count
                while i < lineEnd && (status[i] == UInt8(ascii: "\t") || status[i] == UInt8(ascii: " ")) { i += 1 }
                var value: UInt32 = 0
                var digits = 0
                while i < lineEnd, case let d = status[i] &- UInt8(ascii: "0"), d < 10 {
                    let (times, o1) = value.multipliedReportingOverflow(by: 10)
                    let (sum, o2) = times.addingReportingOverflow(UInt32(d))
                    if o1 || o2 { return nil }
                    value = sum
                    digits += 1
                    i += 1
                }
                return digits > 0 ? value : nil
            }
            lineStart = lineEnd + 1
        }
        return nil
    }

    /// The user name of `uid` from the system's user database (NSS), nil when it has none.
    static func userName(uid: UInt32) -> String? {
        var size = 1024
        while size <= 1 << 20 {
            var entry = passwd()
            var result: UnsafeMutablePointer<passwd>?
            var buffer = [CChar](repeating: 0, count: size)
            var name: String?
            let rc = buffer.withUnsafeMutableBufferPointer { buf -> Int32 in
                guard let base = buf.baseAddress else { return ENOMEM }
                let rc = getpwuid_r(uid, &entry, base, buf.count, &result)
                // pw_name points into `buf`: copy it out before the buffer goes away.
                if rc == 0, let found = result, let pwName = found.pointee.pw_name {
                    name = String(cString: pwName)
                }
                return rc
            }
            if rc == ERANGE {
                size *= 4
                continue
            }
            return name
        }
        return nil
    }

    // MARK: - cgroup

    /// The systemd unit and container id a process belongs to, from /proc/PID/cgroup (v1 or v2).
    public static func parseCgroup(_ text: String) -> (unit: String?, container: String?) {
        var unified: Substring?
        var systemd: Substring?
        var others: [Substring] = []
        for line in text.split(separator: "\n") {
            // hierarchy-ID:controller-list:path; the path itself may contain ':'.
            let fields = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard fields.count == 3 else { continue }
            let path = fields[2]
            if fields[0] == "0" && fields[1].isEmpty {
                unified = path
            } else if fields[1].split(separator: ",").contains("name=systemd") {
                systemd = path
            } else {
                others.append(path)
            }
        }
        // systemd's own hierarchy names the unit: name=systemd on v1 (legacy or hybrid, where "0::"
        // may be a bare "/"), "0::" on v2. A root path ("/") says nothing (cgroup namespace, or an
        // unused hierarchy), so the next candidate is tried.
        let candidates = [systemd, unified].compactMap { $0 } + others
        let primary = candidates.first { $0 != "/" && !$0.isEmpty }
        guard let primary else { return (nil, nil) }

        let components = primary.split(separator: "/")
        var container: String?
        var containerIndex = -1
        for (index, component) in components.enumerated().reversed() {
            if let id = containerID(in: component) {
                container = id
                containerIndex = index
                break
            }
        }
        if container == nil {
            // v1 without a systemd hierarchy: a container id may show only in a controller's path.
            for path in candidates where path != primary {
                if let id = path.split(separator: "/").reversed().lazy.compactMap(containerID(in:)).first {
                    container = id
                    break
                }
            }
        }
        // The innermost service or scope owns the process. Inside a container only units of the
        // container's own systemd count: the host units around it (the container's scope, or
        // user@1000.service for rootless podman) are not where the process was started.
        let unit = components[(containerIndex + 1)...].last { component in
            component.hasSuffix(".service") || component.hasSuffix(".scope")
        }.map(String.init)
        return (unit, container)
    }

    /// Container runtimes' cgroup names: `docker-ID.scope`, `cri-containerd-ID.scope`, `crio-ID.scope`,
    /// `libpod-ID.scope`, or a bare 64-hex ID (`/docker/ID`, kubepods with the cgroupfs driver).
    /// Conmon's scopes (`libpod-conmon-ID.scope`) are not the container and do not match.
    static func containerID(in component: Substring) -> String? {
        var name = component
        if name.hasSuffix(".scope") { name = name.dropLast(".scope".count) }
        var id = name
        if let dash = name.lastIndex(of: "-") {
            let prefix = name[..<dash]
            guard ["docker", "cri-containerd", "crio", "libpod"].contains(prefix) else { return nil }
            id = name[name.index(after: dash)...]
        }
        guard id.utf8.count == 64, id.utf8.allSatisfy(isHexDigit) else { return nil }
        return String(id)
    }

    private static func isHexDigit(_ c: UInt8) -> Bool {
        (c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9")) || (c >= UInt8(ascii: "a") && c <= UInt8(ascii: "f"))
    }

    // MARK: - The fd walk

    /// Numeric entries of the proc root, sorted: processes (threads are not listed there, only looked up).
    static func listPids(procfd: Int32) -> [Int32] {
        // A fresh open file description, so reading it does not move procfd's offset.
        let dirfd = openat(procfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dirfd < 0 { return [] }
        guard let dir = fdopendir(dirfd) else {
            close(dirfd)
            return []
        }
        defer { closedir(dir) }
        var pids: [Int32] = []
        pids.reserveCapacity(1024)
        while let entry = readdir(dir) {
            if let pid = parseDecimal(UnsafeRawPointer(entry) + direntNameOffset), pid > 0 {
                pids.append(pid)
            }
        }
        // /proc lists in pid order already; other roots (tests) may not, and the order decides
        // which owner a targeted scan reports first.
        pids.sort()
        return pids
    }

    /// Where `d_name` sits in `struct dirent` (19 on Linux with glibc).
    static let direntNameOffset = MemoryLayout<dirent>.offset(of: \dirent.d_name) ?? 19

    /// A NUL-terminated decimal name (a pid or an fd number); nil for anything else.
    @inline(__always)
    static func parseDecimal(_ name: UnsafeRawPointer) -> Int32? {
        var value: Int32 = 0
        var i = 0
        while true {
            let c = name.load(fromByteOffset: i, as: UInt8.self)
            if c == 0 { break }
            let d = c &- UInt8(ascii: "0")
            // Ten digits at most; the overflow check covers values past Int32.max.
            guard d < 10, i < 10 else { return nil }
            let (times, o1) = value.multipliedReportingOverflow(by: 10)
            let (sum, o2) = times.addingReportingOverflow(Int32(d))
            if o1 || o2 { return nil }
            value = sum
            i += 1
        }
        return i > 0 ? value : nil
    }

    /// Writes `value` (>= 0) as decimal digits at `out`, returning how many bytes were written.
    @inline(__always)
    static func writeDecimal(_ value: Int32, _ out: UnsafeMutablePointer<CChar>) -> Int {
        var digits: (CChar, CChar, CChar, CChar, CChar, CChar, CChar, CChar, CChar, CChar) = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        var v = value
        var n = 0
        withUnsafeMutableBytes(of: &digits) { raw in
            repeat {
                raw[n] = UInt8(truncatingIfNeeded: v % 10) &+ UInt8(ascii: "0")
                v /= 10
                n += 1
            } while v > 0 && n < 10
            for i in 0..<n { out[i] = CChar(bitPattern: raw[n - 1 - i]) }
        }
        return n
    }

    /// The inode in a `socket:[12345]` link target; nil for any other target (files, pipes, anon inodes).
    @inline(__always)
    static func socketInode(_ link: UnsafeRawBufferPointer) -> UInt64? {
        let n = link.count
        guard n >= 10, link[n - 1] == UInt8(ascii: "]"),
              link[0] == UInt8(ascii: "s"), link[1] == UInt8(ascii: "o"), link[2] == UInt8(ascii: "c"),
              link[3] == UInt8(ascii: "k"), link[4] == UInt8(ascii: "e"), link[5] == UInt8(ascii: "t"),
              link[6] == UInt8(ascii: ":"), link[7] == UInt8(ascii: "[")
        else { return nil }
        var value: UInt64 = 0
        for i in 8..<(n - 1) {
            let d = link[i] &- UInt8(ascii: "0")
            guard d < 10 else { return nil }
            let (times, o1) = value.multipliedReportingOverflow(by: 10)
            let (sum, o2) = times.addingReportingOverflow(UInt64(d))
            if o1 || o2 { return nil }
            value = sum
        }
        return value
    }
}

/// One walk over /proc/PID/fd directories: the result so far and the buffers reused for every fd.
private struct FdWalk: ~Copyable {
    let procfd: Int32
    let targeted: Bool
    let wanted: Set<UInt64>
    /// Wanted inodes without an owner yet; the targeted walk ends at zero.
    var remaining: Int
    var owners = OwnerTable()
    /// Every pid that owns a recorded socket, once: whose details to read.
    var ownerPids: [Int32] = []
    var unreadable = 0
    /// A bounded walk stopped before the highest fds of some processes.
    var truncated = false
    /// Whether fd directories report their fd count as st_size, letting pass 1 skip listing them.
    let sizeIsFdCount: Bool

    /// "PID/fd" relative to the proc root, and fd-number names in pass 1.
    let path: UnsafeMutablePointer<CChar>
    /// A link target; "socket:[18446744073709551615]" is 29 bytes, longer targets are not sockets.
    let link: UnsafeMutablePointer<CChar>
    static let pathCapacity = 32
    static let linkCapacity = 64

    init(procfd: Int32, wanted: Set<UInt64>?) {
        self.procfd = procfd
        self.targeted = wanted != nil
        self.wanted = wanted ?? []
        self.remaining = wanted?.count ?? -1
        self.sizeIsFdCount = Self.sizeIsFdCount(procfd: procfd)
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
    mutating func fullScan(_ pids: [Int32]) {
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
                if got < 0 && (errno == EACCES || errno == EPERM) {
                    unreadable += 1
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
    /// pass 3 (thorough only) the rest. Both end as soon as every wanted inode has an owner.
    mutating func targetedScan(_ pids: [Int32], thorough: Bool) {
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
        if remaining == 0 { return }
        needListing.sort { $0.fds < $1.fds }
        var big: [Int32] = []
        for (pid, fds) in needListing {
            let dfd = openFdDir(pid)
            if dfd < 0 { continue }
            if fds > Int(ProcessScanner.midFdLimit) {
                // A huge fd table: read the middle range by name instead of listing it all.
                probeRange(dfd, pid: pid, ProcessScanner.lowFdLimit..<ProcessScanner.midFdLimit)
                close(dfd)
                big.append(pid)
            } else {
                listFds(dfd, pid: pid, from: ProcessScanner.lowFdLimit)
            }
            if remaining == 0 { return }
        }
        if big.isEmpty { return }
        guard thorough else {
            truncated = true
            return
        }
        for pid in big {
            let dfd = openFdDir(pid)
            if dfd >= 0 { listFds(dfd, pid: pid, from: ProcessScanner.midFdLimit) }
            if remaining == 0 { return }
        }
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
                if remaining == 0 { return }
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
        let dfd = openat(procfd, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dfd < 0 {
            // ENOENT/ESRCH: exited since the listing, silently skipped. EACCES/EPERM: another
            // user's process without CAP_SYS_PTRACE, counted so the caller can say so.
            let code = errno
            if code == EACCES || code == EPERM { unreadable += 1 }
        }
        return dfd
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
                if got < 0 && (errno == EACCES || errno == EPERM) {
                    unreadable += 1
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
                if remaining == 0 { return }
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

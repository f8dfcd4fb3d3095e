#if canImport(Glibc)
import Glibc
#endif
import CSockDiag

/// Finds network namespaces: the named ones under /run/netns and every distinct
/// /proc/PID/ns/net (unnamed ones made by `unshare -n`, container runtimes).
public enum NamespaceDirectory {
    /// nsfs's magic number (statfs f_type): a /run/netns entry that is not a mounted namespace
    /// (left over by a failed delete) is not one.
    static let nsfsMagic: Int = 0x6e73_6673

    /// Namespaces found, and what kept some from being seen.
    public struct Found: Sendable {
        public var namespaces: [NetworkNamespace]
        public var notes: [String]

        public init(namespaces: [NetworkNamespace], notes: [String] = []) {
            self.namespaces = namespaces
            self.notes = notes
        }
    }

    /// The namespaces a selection names: ours, one (`--netns`), or every one (`--all-namespaces`).
    /// A bad `--netns` value is a usage error.
    public static func select(_ selection: NamespaceSelection, procRoot: String = "/proc",
                              runDir: String = "/run/netns") throws(PortwatchError) -> Found {
        switch selection {
        case .own:
            guard let own = own(procRoot: procRoot, runDir: runDir) else {
                throw .system("cannot read \(procRoot)/self/ns/net")
            }
            return Found(namespaces: [own])
        case .one(let spec):
            return Found(namespaces: [try resolve(spec, procRoot: procRoot, runDir: runDir)])
        case .all:
            return discover(procRoot: procRoot, runDir: runDir)
        case .list(let names):
            var found: [NetworkNamespace] = []
            var notes: [String] = []
            // Ours is looked up once for the whole list (the daemon resolves its list every sample).
            let ownInode = nsIdentity("\(procRoot)/self/ns/net")?.inode
            for name in names {
                do throws(PortwatchError) {
                    let ns = try resolve(name, procRoot: procRoot, runDir: runDir, ownInode: ownInode)
                    if !found.contains(where: { $0.inode == ns.inode }) { found.append(ns) }
                } catch {
                    notes.append(error.message)
                }
            }
            return Found(namespaces: found.sorted(), notes: notes)
        }
    }

    /// The namespace portwatch runs in (named when it is one of /run/netns).
    public static func own(procRoot: String = "/proc", runDir: String = "/run/netns") -> NetworkNamespace? {
        own(procRoot: procRoot, named: named(runDir: runDir))
    }

    /// Ours, named from `named` (the /run/netns entries already listed).
    static func own(procRoot: String, named: [NetworkNamespace]) -> NetworkNamespace? {
        guard let (inode, device) = nsIdentity("\(procRoot)/self/ns/net") else { return nil }
        let name = named.first { $0.inode == inode }?.name
        return NetworkNamespace(inode: inode, device: device, name: name, path: "\(procRoot)/self/ns/net", isOwn: true)
    }

    /// What changes when a name under `runDir` is added, removed or attached (`ip netns add`,
    /// `delete`, `attach`): its inode, mtime and ctime; empty when it cannot be read. Lets a
    /// caller resolve names again only when this changed.
    public static func namesState(runDir: String = "/run/netns") -> [Int] {
        var st = stat()
        guard stat(runDir, &st) == 0 else { return [] }
        return [Int(st.st_ino), Int(st.st_mtim.tv_sec), Int(st.st_mtim.tv_nsec), Int(st.st_ctim.tv_sec), Int(st.st_ctim.tv_nsec)]
    }

    /// The namespaces named under `runDir`, by name.
    public static func named(runDir: String = "/run/netns") -> [NetworkNamespace] {
        guard let dir = opendir(runDir) else { return [] }
        defer { closedir(dir) }
        var found: [NetworkNamespace] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name == "." || name == ".." { continue }
            let path = "\(runDir)/\(name)"
            guard let (inode, device) = nsIdentity(path) else { continue }
            found.append(NetworkNamespace(inode: inode, device: device, name: name, path: path))
        }
        return found.sorted()
    }

    /// Every namespace: ours, the named ones, and one per distinct /proc/PID/ns/net.
    public static func discover(procRoot: String = "/proc", runDir: String = "/run/netns",
                                pids: [Int32]? = nil) -> Found {
        var notes: [String] = []
        var byInode: [UInt64: NetworkNamespace] = [:]
        let namedOnes = named(runDir: runDir)
        if let own = own(procRoot: procRoot, named: namedOnes) { byInode[own.inode] = own }
        for ns in namedOnes where byInode[ns.inode] == nil { byInode[ns.inode] = ns }
        let procfd = open(procRoot, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if procfd >= 0 {
            defer { close(procfd) }
            var refused = 0
            for pid in pids ?? ProcessScanner.listPids(procRoot: procRoot) {
                var st = stat()
                if fstatat(procfd, "\(pid)/ns/net", &st, 0) != 0 {
                    if errno == EACCES || errno == EPERM { refused += 1 }
                    continue
                }
                let inode = UInt64(st.st_ino)
                if var known = byInode[inode] {
                    if known.name == nil && !known.isOwn && (known.pid ?? .max) > pid {
                        known.pid = pid
                        known.path = "\(procRoot)/\(pid)/ns/net"
                        byInode[inode] = known
                    }
                    continue
                }
                byInode[inode] = NetworkNamespace(inode: inode, device: UInt64(st.st_dev),
                                                  path: "\(procRoot)/\(pid)/ns/net", pid: pid)
            }
            if refused > 0 {
                notes.append("the network namespaces of \(refused) process\(refused == 1 ? "" : "es") could not be seen — needs root or CAP_SYS_PTRACE")
            }
        } else {
            notes.append("cannot read \(procRoot): only named network namespaces are shown")
        }
        return Found(namespaces: byInode.values.sorted(), notes: notes)
    }

    /// `NAME` (under /run/netns), a namespace file path, or `pid:PID`.
    public static func resolve(_ spec: String, procRoot: String = "/proc",
                               runDir: String = "/run/netns") throws(PortwatchError) -> NetworkNamespace {
        try resolve(spec, procRoot: procRoot, runDir: runDir, ownInode: nsIdentity("\(procRoot)/self/ns/net")?.inode)
    }

    /// `resolve` with our own namespace's inode already known.
    static func resolve(_ spec: String, procRoot: String, runDir: String,
                        ownInode: UInt64?) throws(PortwatchError) -> NetworkNamespace {
        if spec.isEmpty { throw .usage("--netns: empty namespace name") }
        let path: String
        var pid: Int32? = nil
        if spec.hasPrefix("pid:") {
            guard let n = Int32(spec.dropFirst(4)), n > 0 else {
                throw .usage("--netns \(spec): expected pid:PID with a process id")
            }
            path = "\(procRoot)/\(n)/ns/net"
            pid = n
            if access("\(procRoot)/\(n)", F_OK) != 0 { throw .usage("--netns \(spec): no process \(n)") }
        } else if spec.contains("/") {
            path = spec
        } else {
            if spec == "." || spec == ".." { throw .usage("--netns \(spec): not a namespace name") }
            path = "\(runDir)/\(spec)"
            if access(path, F_OK) != 0 {
                throw .usage("--netns \(spec): no network namespace named \(spec) (see ip netns list)")
            }
        }
        guard let (inode, device) = nsIdentity(path) else {
            if errno == EACCES || errno == EPERM {
                throw .permission("--netns \(spec): \(path) is not readable — needs root or CAP_SYS_PTRACE")
            }
            throw .usage("--netns \(spec): \(path) is not a network namespace")
        }
        let name = spec.contains("/") || spec.hasPrefix("pid:")
            ? named(runDir: runDir).first { $0.inode == inode }?.name : spec
        return NetworkNamespace(inode: inode, device: device, name: name, path: path, pid: pid, isOwn: inode == ownInode)
    }

    /// Inode and device of a network namespace file; nil (errno set) when it is not one.
    static func nsIdentity(_ path: String) -> (inode: UInt64, device: UInt64)? {
        let type = csd_fs_type(path)
        guard type >= 0 else { return nil }
        guard Int(type) == nsfsMagic else {
            errno = EINVAL
            return nil
        }
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        return (UInt64(st.st_ino), UInt64(st.st_dev))
    }
}

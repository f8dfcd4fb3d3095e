/// A network namespace portwatch can read sockets from: identified by the inode of its
/// namespace file (what `ls -L -i /proc/PID/ns/net` and `ss -N` agree on), with the name it has
/// under /run/netns when it has one.
public struct NetworkNamespace: Sendable, Hashable, Comparable {
    /// Inode of the nsfs file: the namespace's identity, the same through every path to it.
    public var inode: UInt64
    /// Device of the nsfs file (inodes are unique within it).
    public var device: UInt64
    /// The name under /run/netns (`ip netns add NAME`), nil for unnamed namespaces.
    public var name: String?
    /// A file that enters it: /run/netns/NAME, a namespace path given by the user, or /proc/PID/ns/net.
    public var path: String
    /// A process inside it (the lowest pid seen), for unnamed namespaces; nil when none was looked for.
    public var pid: Int32?
    /// The namespace portwatch itself runs in.
    public var isOwn: Bool

    public init(inode: UInt64, device: UInt64 = 0, name: String? = nil, path: String, pid: Int32? = nil, isOwn: Bool = false) {
        self.inode = inode
        self.device = device
        self.name = name
        self.path = path
        self.pid = pid
        self.isOwn = isOwn
    }

    /// How tables name it: the /run/netns name, `host` for our own, else `pid:PID` or `net:[INODE]`.
    public var label: String {
        if let name { return name }
        if isOwn { return "host" }
        if let pid { return "pid:\(pid)" }
        return "net:[\(inode)]"
    }

    /// Own namespace first, then named ones by name, then the rest by inode.
    public static func < (a: NetworkNamespace, b: NetworkNamespace) -> Bool {
        if a.isOwn != b.isOwn { return a.isOwn }
        switch (a.name, b.name) {
        case let (x?, y?): return x == y ? a.inode < b.inode : x < y
        case (.some, nil): return true
        case (nil, .some): return false
        case (nil, nil): return a.inode < b.inode
        }
    }
}

/// Which namespaces a command looks at: `--netns NAME|PATH|pid:PID`, `--all-namespaces`, or
/// (neither) the caller's own, exactly as before namespaces existed.
public enum NamespaceSelection: Sendable, Hashable {
    case own
    case one(String)
    case all
    /// Several names (the daemon's `namespaces: [a, b]`); names not present yet are skipped.
    case list([String])

    /// Whether rows must say which namespace they come from.
    public var tagsRows: Bool { self != .own }
}

/// A container a process runs in, from its cgroup path.
public struct ContainerIdentity: Sendable, Hashable, Codable {
    /// The runtime's id: a 64-hex id (docker, containerd, cri-o, podman) or a machine name
    /// (systemd-nspawn, lxc).
    public var id: String
    /// `docker`, `containerd`, `cri-o`, `podman`, `kubepods`, `systemd-nspawn` or `lxc`.
    public var runtime: String

    public init(id: String, runtime: String) {
        self.id = id
        self.runtime = runtime
    }
}

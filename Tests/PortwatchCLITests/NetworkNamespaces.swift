// Private network namespaces for tests: named namespaces with `lo` up and the python3 children
// in them (`NamespaceLab`), a veth-joined pair for remote checks (`NetnsLab`), and unique names.

import Foundation
#if canImport(Glibc)
import Glibc
#endif

// MARK: - Named namespaces

/// One named namespace of a lab: its name and the inode portwatch's JSON identifies it by.
struct LabNamespace: Sendable {
    let name: String
    let inode: UInt64
}

/// Named network namespaces private to one test, `lo` up in each, and the children started in
/// them. `destroy` (also run by `deinit`) kills the children and deletes the namespaces, so a
/// test that fails or throws midway leaves nothing behind. Names carry our pid: tests of this
/// and other processes run in parallel.
class NamespaceLab: @unchecked Sendable {
    // @unchecked: `namespaces` is written only by `init`; the mutable state is under `lock`.
    private(set) var namespaces: [LabNamespace] = []
    var names: [String] { namespaces.map(\.name) }
    private var created: [String] = []
    private var children: [Child] = []
    private let lock = NSLock()

    private static let counter = Counter()

    /// A number no other lab of this process has (for unique names, addresses and ports).
    static func nextSerial() -> Int { counter.next() }

    /// Namespaces with exactly these names (unique ones: with the pid); throws after cleaning up.
    init(names: [String]) throws {
        guard let ip = TestEnv.ip else { throw SupportError("ip not found") }
        do {
            for name in names {
                let made = runTool(ip, ["netns", "add", name])
                if made.status != 0 { throw SupportError("ip netns add \(name) failed (\(made.status)): \(made.stderr)") }
                created.append(name)
                let up = runTool(ip, ["-n", name, "link", "set", "lo", "up"])
                if up.status != 0 { throw SupportError("lo up in \(name) failed (\(up.status)): \(up.stderr)") }
                var st = stat()
                guard stat("/run/netns/\(name)", &st) == 0 else { throw SupportError("no /run/netns/\(name)") }
                namespaces.append(LabNamespace(name: name, inode: UInt64(st.st_ino)))
            }
        } catch {
            destroy()
            throw error
        }
    }

    deinit { destroy() }

    /// Runs a command inside one of the namespaces.
    @discardableResult
    func exec(_ netns: String, _ command: [String], timeout: Double = 10) -> (status: Int32, stdout: String, stderr: String) {
        guard let ip = TestEnv.ip else { return (-1, "", "ip not found") }
        return runTool(ip, ["netns", "exec", netns] + command, timeout: timeout)
    }

    /// Starts a python3 server (see `PythonServer`) inside a namespace; stopped by `destroy`.
    func startServer(_ specs: [String], in netns: String) throws -> PythonServer {
        let server = try PythonServer.start(specs, netns: netns)
        adopt(server.child)
        return server
    }

    /// Starts python3 running `script` (see `spawnPython`); killed by `destroy`.
    func startPython(_ script: String, _ arguments: [String], in place: ChildPlace,
                     timeout: Double = 20) throws -> (child: Child, line: String) {
        let started = try spawnPython(script, arguments, in: place, timeout: timeout)
        adopt(started.child)
        return started
    }

    /// Starts a `ConnectionHolder` in `place`; killed by `destroy`.
    func startHolder(port: UInt16, connections: Int, bytes: Int = 0, closing: Int = 0,
                     in place: ChildPlace) throws -> ConnectionHolder {
        let holder = try ConnectionHolder(port: port, connections: connections, bytes: bytes, closing: closing, in: place)
        adopt(holder.child)
        return holder
    }

    /// Has `destroy` kill `child` too.
    func adopt(_ child: Child) {
        lock.lock(); children.append(child); lock.unlock()
    }

    /// Kills the children and deletes the namespaces (what they hold goes with them). Idempotent.
    func destroy() {
        lock.lock()
        let kids = children
        let names = created
        children = []
        created = []
        lock.unlock()
        for child in kids { child.kill() }
        guard let ip = TestEnv.ip else { return }
        for name in names where access("/run/netns/\(name)", F_OK) == 0 { runTool(ip, ["netns", "delete", name]) }
    }
}

// MARK: - A veth-joined pair

/// A private pair of network namespaces joined by a veth pair: the client side (where
/// `portwatch` runs, through `ip netns exec`) has 10.250.N.1/30 and fd00:250:N::1/64, the
/// server side 10.250.N.2/30 and fd00:250:N::2/64. Nothing is added to the test host's own
/// namespace, so no address or route of the host can clash; deleting the namespaces deletes
/// the veth pair and every process-free resource in them.
final class NetnsLab: NamespaceLab, @unchecked Sendable {
    // @unchecked: its own properties are constants; the lab locks its state.
    let client: String
    let server: String
    let n: Int
    var clientV4: String { "10.250.\(n).1" }
    var serverV4: String { "10.250.\(n).2" }
    var clientV6: String { "fd00:250:\(n)::1" }
    var serverV6: String { "fd00:250:\(n)::2" }

    /// Creates both namespaces, the veth pair and the addresses; throws (after cleaning up) on failure.
    init() throws {
        guard let ip = TestEnv.ip else { throw SupportError("ip not found") }
        let pid = Int(getpid())
        let k = NamespaceLab.nextSerial()
        n = (pid + k) % 250 + 1
        client = "pw-\(pid)-\(k)c"
        server = "pw-\(pid)-\(k)s"
        try super.init(names: [client, server])
        let steps: [[String]] = [
            ["-n", client, "link", "add", "pwc", "type", "veth", "peer", "name", "pws", "netns", server],
            ["-n", client, "addr", "add", "\(clientV4)/30", "dev", "pwc"],
            ["-n", server, "addr", "add", "\(serverV4)/30", "dev", "pws"],
            ["-n", client, "-6", "addr", "add", "\(clientV6)/64", "dev", "pwc", "nodad"],
            ["-n", server, "-6", "addr", "add", "\(serverV6)/64", "dev", "pws", "nodad"],
            ["-n", client, "link", "set", "pwc", "up"],
            ["-n", server, "link", "set", "pws", "up"],
        ]
        for step in steps {
            let r = runTool(ip, step)
            if r.status != 0 {
                destroy()
                throw SupportError("ip \(step.joined(separator: " ")) failed (\(r.status)): \(r.stderr)")
            }
        }
    }

    /// Loads an nft ruleset (text for `nft -f`) in a namespace.
    func nft(_ netns: String, _ ruleset: String) throws {
        guard let nft = TestEnv.nft else { throw SupportError("nft not found") }
        let path = "/tmp/pw-nft-\(getpid())-\(NamespaceLab.nextSerial()).nft"
        guard FileManager.default.createFile(atPath: path, contents: Data(ruleset.utf8)) else {
            throw SupportError("cannot write \(path)")
        }
        defer { unlink(path) }
        let r = exec(netns, [nft, "-f", path])
        if r.status != 0 { throw SupportError("nft -f failed (\(r.status)): \(r.stderr)\n\(ruleset)") }
    }
}

/// A thread-safe counter for unique names.
final class Counter: @unchecked Sendable {
    private var value = 0
    private let lock = NSLock()
    func next() -> Int {
        lock.lock(); defer { lock.unlock() }
        value += 1
        return value
    }
}

// MARK: - Fake containers

/// A cgroup named as docker names its containers (`SLICE/docker-ID.scope`), in a cgroup hierarchy
/// this test may write (systemd's named v1 one, or the v2 one): moving a process into it makes
/// that process a container's, as portwatch reads `/proc/PID/cgroup`.
final class FakeContainerCgroup {
    /// The writable hierarchy; nil when not root or none is mounted writable.
    static let root: String? = {
        guard geteuid() == 0 else { return nil }
        for root in ["/sys/fs/cgroup/systemd", "/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
        where access(root + "/cgroup.procs", W_OK) == 0 {
            return root
        }
        return nil
    }()

    let root: String
    let parent: String
    let scope: String
    private var moved: [Int32] = []

    /// Makes `ROOT/SLICE-PID.slice/docker-ID.scope`.
    init(slice: String, id: String) throws {
        guard let root = Self.root else { throw SupportError("no writable cgroup hierarchy") }
        self.root = root
        parent = "\(root)/\(slice)-\(getpid()).slice"
        scope = "\(parent)/docker-\(id).scope"
        guard mkdir(parent, 0o755) == 0 || errno == EEXIST, mkdir(scope, 0o755) == 0 || errno == EEXIST else {
            throw SupportError("cannot create \(scope): \(String(cString: strerror(errno)))")
        }
    }

    /// Moves `pid` into the container's cgroup.
    func adopt(_ pid: Int32) throws {
        guard Self.write(pid, to: scope + "/cgroup.procs") else {
            throw SupportError("cannot move \(pid) into \(scope): \(String(cString: strerror(errno)))")
        }
        moved.append(pid)
    }

    /// Moves the adopted processes back to the root (they may outlive the test) and removes the cgroups.
    func remove() {
        for pid in moved { _ = Self.write(pid, to: root + "/cgroup.procs") }
        moved = []
        rmdir(scope)
        rmdir(parent)
    }

    deinit { remove() }

    private static func write(_ pid: Int32, to file: String) -> Bool {
        "\(pid)\n".withCString { text in
            let fd = open(file, O_WRONLY)
            defer { if fd >= 0 { close(fd) } }
            return fd >= 0 && Glibc.write(fd, text, strlen(text)) == strlen(text)
        }
    }
}

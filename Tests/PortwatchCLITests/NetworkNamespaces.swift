// Private network namespaces for tests: named namespaces with `lo` up and the python3 children
// in them (`NamespaceLab`), a veth-joined pair for remote checks (`NetnsLab`), a listener with
// established connections (`ConnectionHolder`), and unique names for all of them.

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

/// Where a test's python3 child runs.
enum ChildPlace: Sendable, CustomStringConvertible {
    /// Inside a named namespace (through `ip netns exec`).
    case named(String)
    /// In a fresh unnamed namespace of its own (`unshare -n`), which goes with the child; `lo`
    /// there is down.
    case unnamed

    var description: String {
        switch self {
        case .named(let name): name
        case .unnamed: "unshare -n"
        }
    }
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

    /// `count` namespaces named PREFIX-PID-K-1 … PREFIX-PID-K-count (K unique in this process).
    convenience init(prefix: String, count: Int) throws {
        let tag = "\(prefix)-\(getpid())-\(NamespaceLab.nextSerial())"
        try self.init(names: (1...count).map { "\(tag)-\($0)" })
    }

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

// MARK: - python3 children

/// Spawns python3 running `script` with `arguments` in `place`, stdin a pipe, and waits up to
/// `timeout` for its first line (its readiness). Throws, with its stderr, when none comes.
func spawnPython(_ script: String, _ arguments: [String], in place: ChildPlace,
                 timeout: Double = 20) throws -> (child: Child, line: String) {
    guard let python = TestEnv.python3 else { throw SupportError("python3 not found") }
    let command = [python, "-u", "-c", script] + arguments
    let child: Child
    switch place {
    case .named(let name):
        guard let ip = TestEnv.ip else { throw SupportError("ip not found") }
        child = try Child.spawn(ip, ["netns", "exec", name] + command, stdin: .pipe)
    case .unnamed:
        guard let unshare = TestEnv.which("unshare") else { throw SupportError("unshare not found") }
        child = try Child.spawn(unshare, ["-n"] + command, stdin: .pipe)
    }
    guard let line = child.readLine(timeout: timeout) else {
        let err = child.drainStderr()
        child.kill()
        throw SupportError("python3 child in \(place) did not start: \(err)")
    }
    return (child, line)
}

/// Sends `command` as one line to each child's stdin, all before any reply is awaited (so the
/// children act at once), then waits for the line `reply` from each: a step of cooperative
/// python3 children that say when they are done.
func tell(_ children: [Child], _ command: String, awaiting reply: String, timeout: Double = 30) throws {
    let line = command + "\n"
    let count = line.utf8.count
    for child in children {
        guard line.withCString({ write(child.stdinFD, $0, count) }) == count else {
            throw SupportError("child \(child.pid): stdin closed")
        }
    }
    for child in children {
        guard child.readLine(timeout: timeout) == reply else {
            throw SupportError("child \(child.pid): no '\(reply)' after '\(command)': \(child.drainStderr())")
        }
    }
}

// MARK: - A listener with established connections

/// A python3 child with a listener on 127.0.0.1:PORT and CONNS established loopback connections
/// to it. On "go" each client sends PER bytes, the server side reads them all, the first CLOSE
/// connections are aborted (both ends), and it prints "done". With a path to `ip` as the last
/// argument it first brings `lo` up (an unnamed namespace's is down).
private let holderScript = #"""
import os, socket, struct, sys
port, conns, per, close_n = (int(a) for a in sys.argv[1:5])
if len(sys.argv) > 5:
    os.system(sys.argv[5] + " link set lo up")
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", port))
srv.listen(64)
clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(conns)]
accepted = {}
for _ in range(conns):
    s, peer = srv.accept()
    accepted[peer[1]] = s
pairs = [(c, accepted[c.getsockname()[1]]) for c in clients]
print(os.getpid(), *(c.getsockname()[1] for c in clients), flush=True)
for line in sys.stdin:
    if line.startswith("go"):
        for c, _ in pairs:
            c.sendall(b"x" * per)
        for _, s in pairs:
            got = 0
            while got < per:
                got += len(s.recv(65536))
        for c, s in pairs[:close_n]:
            # An abort (RST): a FIN would add its one byte to the server's bytes_received.
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            c.close()
            s.close()
        print("done", flush=True)
"""#

/// A listener holding established loopback connections (clients' ports drawn by the kernel
/// from its namespace's ephemeral range), inside a namespace; see `holderScript`.
struct ConnectionHolder: Sendable {
    let child: Child
    let pid: Int32
    /// The inode of the holder's network namespace.
    let inode: UInt64
    /// The clients' local ports, one per connection.
    let clientPorts: [Int]

    init(port: UInt16, connections: Int, bytes: Int = 0, closing: Int = 0, in place: ChildPlace) throws {
        var arguments = [String(port), String(connections), String(bytes), String(closing)]
        if case .unnamed = place {
            guard let ip = TestEnv.ip else { throw SupportError("ip not found") }
            arguments.append(ip)
        }
        let (child, line) = try spawnPython(holderScript, arguments, in: place)
        let fields = line.split(separator: " ").compactMap { Int($0) }
        var st = stat()
        guard fields.count == connections + 1, let pid = Int32(exactly: fields[0]),
              stat("/proc/\(pid)/ns/net", &st) == 0 else {
            child.kill()
            throw SupportError("holder in \(place) said '\(line)'")
        }
        self.child = child
        self.pid = pid
        self.inode = UInt64(st.st_ino)
        self.clientPorts = Array(fields.dropFirst())
    }

    /// Has every client send its bytes and the first `closing` connections abort; see
    /// `trafficAndClose(_:)` for several holders at once.
    func trafficAndClose() throws { try Self.trafficAndClose([self]) }

    /// Has every holder's clients send their bytes and abort, all at once; returns when all are done.
    static func trafficAndClose(_ holders: [ConnectionHolder]) throws {
        try tell(holders.map(\.child), "go", awaiting: "done", timeout: 20)
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

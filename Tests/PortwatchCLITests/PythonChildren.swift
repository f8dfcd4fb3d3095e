// python3 children holding sockets in another process (on the host or in a namespace).

import Foundation
#if canImport(Glibc)
import Glibc
#endif

// MARK: - python3 children holding sockets

/// A python3 child that binds sockets, prints their ports on one line, serves them, and exits
/// when its stdin closes (so it never outlives the test process) or when killed.
///
/// Each spec is `KIND:HOST:PORT`:
/// - `tcp`: listen (backlog 16) and accept-then-close every connection;
/// - `tcp-hold`: listen and never accept;
/// - `tcp-reuseport`: like `tcp-hold`, with SO_REUSEPORT (for several processes on one port);
/// - `udp-echo`: answer every datagram with the same bytes;
/// - `udp-silent`: bind and never answer.
/// HOST `::` is dual-stack. PORT 0 lets the kernel pick.
final class PythonServer: @unchecked Sendable {
    let child: Child
    /// The bound ports, in spec order.
    let ports: [UInt16]
    var pid: pid_t { child.pid }

    static let script = #"""
import os, select, signal, socket, sys
signal.signal(signal.SIGTERM, signal.SIG_DFL)
socks = []
ports = []
for spec in sys.argv[1:]:
    kind, rest = spec.split(":", 1)
    host, port = rest.rsplit(":", 1)
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    typ = socket.SOCK_DGRAM if kind.startswith("udp") else socket.SOCK_STREAM
    s = socket.socket(fam, typ)
    if fam == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0 if host == "::" else 1)
    if kind == "tcp-reuseport":
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind((host, int(port)))
    if typ == socket.SOCK_STREAM:
        s.listen(16)
    socks.append((kind, s))
    ports.append(str(s.getsockname()[1]))
print(" ".join(ports), flush=True)
watch = [sys.stdin.fileno()] + [s.fileno() for k, s in socks if k in ("tcp", "udp-echo")]
by_fd = {s.fileno(): (k, s) for k, s in socks}
while True:
    ready, _, _ = select.select(watch, [], [], 60)
    for fd in ready:
        if fd == sys.stdin.fileno():
            if not os.read(fd, 4096):
                sys.exit(0)
            continue
        kind, s = by_fd[fd]
        try:
            if kind == "tcp":
                c, _ = s.accept()
                c.close()
            else:
                data, addr = s.recvfrom(65535)
                s.sendto(data, addr)
        except OSError:
            pass
"""#

    private init(child: Child, ports: [UInt16]) {
        self.child = child
        self.ports = ports
    }

    /// Starts the child (inside network namespace `netns` when given) and waits for its ports.
    static func start(_ specs: [String], netns: String? = nil, timeout: Double = 10) throws -> PythonServer {
        let (child, line) = try spawnPython(script, specs, in: netns.map { .named($0) } ?? .host, timeout: timeout)
        let ports = line.split(separator: " ").compactMap { UInt16($0) }
        guard ports.count == specs.count else {
            child.kill()
            throw SupportError("python3 child \(specs) reported '\(line)'")
        }
        return PythonServer(child: child, ports: ports)
    }

    /// Kills and reaps the child.
    func stop() { child.kill() }
}

// MARK: - Spawning python3 children anywhere

/// Where a test's python3 child runs.
enum ChildPlace: Sendable, CustomStringConvertible {
    /// In the test process's own namespace.
    case host
    /// Inside a named namespace (through `ip netns exec`).
    case named(String)
    /// In a fresh unnamed namespace of its own (`unshare -n`), which goes with the child; `lo`
    /// there is down.
    case unnamed

    var description: String {
        switch self {
        case .host: "the host's namespace"
        case .named(let name): name
        case .unnamed: "unshare -n"
        }
    }
}

/// Spawns python3 running `script` with `arguments` in `place`, stdin a pipe, and waits up to
/// `timeout` for its first line (its readiness). Throws, with its stderr, when none comes.
func spawnPython(_ script: String, _ arguments: [String], in place: ChildPlace,
                 timeout: Double = 20) throws -> (child: Child, line: String) {
    guard let python = TestEnv.python3 else { throw SupportError("python3 not found") }
    let command = [python, "-u", "-c", script] + arguments
    let child: Child
    switch place {
    case .host:
        child = try Child.spawn(python, Array(command.dropFirst()), stdin: .pipe)
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

    /// Has every holder's clients send their bytes and the first `closing` connections abort,
    /// all at once; returns when all are done.
    static func trafficAndClose(_ holders: [ConnectionHolder]) throws {
        try tell(holders.map(\.child), "go", awaiting: "done", timeout: 20)
    }
}

// python3 children holding sockets in another process.

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
        guard let python = TestEnv.python3 else { throw SupportError("python3 not found") }
        let child: Child
        if let netns {
            guard let ip = TestEnv.ip else { throw SupportError("ip not found") }
            child = try Child.spawn(ip, ["netns", "exec", netns, python, "-u", "-c", script] + specs, stdin: .pipe)
        } else {
            child = try Child.spawn(python, ["-u", "-c", script] + specs, stdin: .pipe)
        }
        guard let line = child.readLine(timeout: timeout) else {
            let err = child.drainStderr()
            child.kill()
            throw SupportError("python3 child \(specs) did not report its ports: \(err)")
        }
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

// Per-namespace kernel settings (issue 9): the ephemeral port range is a sysctl of each
// network namespace, and portwatch uses it to tell a client's side of a connection (its port
// drawn from the range) from a service's. A namespace whose range differs from the host's must
// be judged by its own range: read with the host's, a client's source port there looks like a
// service with a connection (a phantom row), and its connection is lost from the outgoing rows.

import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Listens on 127.0.0.1:PORT, connects one client to it (the kernel picks the client's port
/// from the namespace's range), accepts, prints "PID CLIENT_PORT" and holds both ends until
/// stdin closes.
private let connectedPairScript = #"""
import os, socket, sys
port = int(sys.argv[1])
lst = socket.socket()
lst.bind(("127.0.0.1", port))
lst.listen(4)
c = socket.create_connection(("127.0.0.1", port))
s, _ = lst.accept()
print(os.getpid(), c.getsockname()[1], flush=True)
sys.stdin.read()
"""#

/// The host's ephemeral range, as the kernel reports it.
private func hostEphemeralRange() throws -> ClosedRange<Int> {
    let text = try String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8)
    let parts = text.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }).compactMap { Int($0) }
    guard parts.count == 2 else { throw SupportError("unreadable ip_local_port_range: \(text)") }
    return parts[0]...parts[1]
}

/// A named namespace (optionally with its own ephemeral range) holding one connected pair.
private final class PairNamespace: @unchecked Sendable {
    let name: String
    let inode: UInt64
    let listenPort: Int
    let clientPort: Int
    private let child: Child

    init(_ name: String, range: ClosedRange<Int>?, listenPort: Int) throws {
        guard let ip = TestEnv.ip, let python = TestEnv.python3 else { throw SupportError("ip or python3 missing") }
        let made = runTool(ip, ["netns", "add", name])
        guard made.status == 0 else { throw SupportError("ip netns add \(name): \(made.stderr)") }
        var spawned: Child? = nil
        do {
            _ = runTool(ip, ["-n", name, "link", "set", "lo", "up"])
            if let range {
                let set = runTool(ip, ["netns", "exec", name, "sysctl", "-w",
                                       "net.ipv4.ip_local_port_range=\(range.lowerBound) \(range.upperBound)"])
                guard set.status == 0 else { throw SupportError("sysctl in \(name): \(set.stderr)") }
            }
            var st = stat()
            guard stat("/run/netns/\(name)", &st) == 0 else { throw SupportError("no /run/netns/\(name)") }
            let child = try Child.spawn(ip, ["netns", "exec", name, python, "-u", "-c", connectedPairScript, String(listenPort)],
                                        stdin: .pipe)
            spawned = child
            guard let line = child.readLine(timeout: 20) else {
                throw SupportError("pair in \(name) did not start: \(child.drainStderr())")
            }
            let fields = line.split(separator: " ").compactMap { Int($0) }
            guard fields.count == 2 else { throw SupportError("pair in \(name) said \(line)") }
            self.name = name
            self.inode = UInt64(st.st_ino)
            self.listenPort = listenPort
            self.clientPort = fields[1]
            self.child = child
        } catch {
            spawned?.kill()
            _ = runTool(ip, ["netns", "delete", name])
            throw error
        }
    }

    func destroy() {
        child.kill()
        if let ip = TestEnv.ip, access("/run/netns/\(name)", F_OK) == 0 { _ = runTool(ip, ["netns", "delete", name]) }
    }
}

@Suite("namespaces: each namespace's own ephemeral port range", .blocking, .serialized,
       .enabled(if: TestEnv.canCreateNamespaces, "needs root, ip and python3 to build network namespaces"))
struct NamespaceSettingsTests {
    /// A namespace drawing client ports from 20000-20100 and one with Linux's default range, in
    /// one `--all-namespaces` run: in each, the listener's row has the connection and the
    /// client's port is no row of its own; with `--all`, the client's connection is an outgoing
    /// row to the listener's port. Both hold only if each namespace is judged by its own range.
    @Test func connectionsAreSidedByTheirNamespacesRange() throws {
        let host = try hostEphemeralRange()
        let narrow = 20000...20100
        // The narrow namespace's service port: outside its range, inside the host's (so the
        // host's range would call the service the client). The default namespace's: inside the
        // narrow range, outside the default one (so the narrow range would misjudge it too).
        let narrowService = host.lowerBound + 1000
        try #require(!narrow.contains(narrowService) && host.contains(narrowService))
        let defaultService = 20050
        try #require(!(32768...60999).contains(defaultService))
        let tag = "pwrange-\(getpid())"
        let a = try PairNamespace("\(tag)-narrow", range: narrow, listenPort: narrowService)
        defer { a.destroy() }
        let b = try PairNamespace("\(tag)-default", range: nil, listenPort: defaultService)
        defer { b.destroy() }
        // The sysctl took: the kernel drew each client's port from its namespace's range.
        try #require(narrow.contains(a.clientPort), "client port \(a.clientPort)")
        try #require((32768...60999).contains(b.clientPort), "client port \(b.clientPort)")

        let r = runPortwatch(["ports", "--all-namespaces", "--all", "--json", "--no-processes"], timeout: 30)
        #expect(r.status == 0, "\(r)")
        let rows = r.json()?.objects("ports") ?? []
        for ns in [a, b] {
            let mine = rows.filter { ($0.object("namespace")?["inode"] as? NSNumber)?.uint64Value == ns.inode }
            let service = mine.first { $0.string("role") == "local" && $0.int("port") == ns.listenPort }
            #expect(service?.object("connections")?.int("established") == 1, "\(ns.name): \(mine)")
            #expect(!mine.contains { $0.string("role") == "local" && $0.int("port") == ns.clientPort },
                    "\(ns.name): the client's port \(ns.clientPort) became a row: \(mine)")
            let outgoing = mine.first { $0.string("role") == "remote" && $0.int("port") == ns.listenPort }
            #expect(outgoing?.object("connections")?.int("established") == 1, "\(ns.name): \(mine)")
        }

        // `--netns` alone (one namespace, the path other commands take) judges the same way.
        let one = runPortwatch(["ports", "--netns", a.name, "--json", "--no-processes"], timeout: 30)
        #expect(one.status == 0, "\(one)")
        let ports = one.json()?.objects("ports").map { $0.int("port") } ?? []
        #expect(ports == [a.listenPort], "\(one)")
    }
}

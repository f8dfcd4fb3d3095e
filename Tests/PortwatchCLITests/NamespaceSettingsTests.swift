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

/// The host's ephemeral range, as the kernel reports it.
private func hostEphemeralRange() throws -> ClosedRange<Int> {
    let text = try String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8)
    let parts = text.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }).compactMap { Int($0) }
    guard parts.count == 2 else { throw SupportError("unreadable ip_local_port_range: \(text)") }
    return parts[0]...parts[1]
}

/// A named namespace (optionally with its own ephemeral range) holding one connected pair.
private final class PairNamespace: NamespaceLab, @unchecked Sendable {
    // @unchecked: `clientPort` is written only by `init`; the lab locks its state.
    let listenPort: Int
    /// The client's port, drawn by the kernel from the namespace's range.
    private(set) var clientPort = 0
    var name: String { names[0] }
    var inode: UInt64 { namespaces[0].inode }

    init(_ name: String, range: ClosedRange<Int>?, listenPort: Int) throws {
        self.listenPort = listenPort
        try super.init(names: [name])
        if let range {
            let set = exec(name, ["sysctl", "-w", "net.ipv4.ip_local_port_range=\(range.lowerBound) \(range.upperBound)"])
            guard set.status == 0 else { throw SupportError("sysctl in \(name): \(set.stderr)") }
        }
        clientPort = try startHolder(port: UInt16(listenPort), connections: 1, in: .named(name)).clientPorts[0]
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

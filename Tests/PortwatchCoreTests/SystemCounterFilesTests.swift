import Testing
import PortwatchTestSupport
@testable import PortwatchCore
#if canImport(Glibc)
import Glibc
#endif

private let ipTool = findExecutable("ip")

@Suite("system counter files of another namespace", .blocking,
       .enabled(if: geteuid() == 0 && ipTool != nil, "needs root and ip to make a network namespace"))
struct SystemCounterFilesTests {
    /// Files opened inside a namespace go on reading that namespace's counters, fresh at every
    /// read, from a thread that never entered it (what lets a sampler skip setns per sample).
    @Test func filesOpenedInsideKeepTheirNamespace() throws {
        let ip = try #require(ipTool)
        let name = "pwcf-\(getpid())"
        try #require(runCommand(ip, ["netns", "add", name], timeout: 5).status == 0)
        defer { _ = runCommand(ip, ["netns", "delete", name], timeout: 5) }
        try #require(runCommand(ip, ["-n", name, "link", "set", "lo", "up"], timeout: 5).status == 0)
        let ns = try NamespaceDirectory.resolve(name)
        let files = try NamespaceEntry.run(in: ns) { () throws(PortwatchError) in
            SystemCounterFiles(root: "/proc/thread-self/net")
        }
        let before = files.collect()
        #expect(before.notes.isEmpty)
        #expect(before.value["Tcp.ActiveOpens"] == 0)
        #expect(before.value["Tcp.CurrEstab"] == 0)

        // One loopback connection made inside the namespace.
        let held = try NamespaceEntry.run(in: ns) { () throws(PortwatchError) -> [LoopbackSocket]? in
            guard let listener = try? LoopbackSocket.listener(), let client = try? LoopbackSocket.tcp(),
                  client.connect(listener.port) == 0, let server = try? listener.accept() else { return nil }
            return [listener, client, server]
        }
        let sockets = try #require(held)
        defer { for s in sockets { s.close() } }

        let after = files.collect()
        #expect(after.notes.isEmpty)
        #expect(after.value["Tcp.ActiveOpens"] == 1)
        #expect(after.value["Tcp.PassiveOpens"] == 1)
        #expect(after.value["Tcp.CurrEstab"] == 2)
    }
}

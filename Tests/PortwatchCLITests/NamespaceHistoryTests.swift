// The daemon's history of other network namespaces (issue 9), end to end: a real named
// namespace with a listener on the same port number as one on the host, the daemon watching
// both, and the two histories read apart through `?netns=` and `portwatch history --netns`.

import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The pids a history sample's `processes` (`name[pid]` strings) name.
private func ownerPids(_ sample: [String: Any]) -> Set<Int32> {
    Set((sample.strings("processes") ?? []).compactMap { owner in
        guard let open = owner.lastIndex(of: "["), owner.hasSuffix("]") else { return nil }
        return Int32(owner[owner.index(after: open)..<owner.index(before: owner.endIndex)])
    })
}

@Suite("namespaces: the daemon's history", .blocking, .serialized,
       .enabled(if: TestEnv.canCreateNamespaces, "needs root, ip and python3 to build network namespaces"))
struct NamespaceHistoryTests {
    @Test func aNamespacesSamplesAreItsOwnHistoryInTheAPIAndTheCLI() throws {
        let dir = try makeTemporaryDirectory("netns-history")
        defer { removeTree(dir) }
        let lab = try NamespaceLab(names: ["pwh-\(getpid())-a"])
        defer { lab.destroy() }
        let ns = lab.names[0]
        // The same port number on the host and inside the namespace.
        let port = try Net.freePorts(1)[0]
        let host = try PythonServer.start(["tcp:127.0.0.1:\(port)"])
        defer { host.stop() }
        let inside = try lab.startServer(["tcp:127.0.0.1:\(port)"], in: ns)
        let (hostPid, insidePid) = (host.child.pid, inside.child.pid)

        let config = dir + "/portwatch.yml"
        try "interval: 200ms\nnamespaces: [\(ns)]\n".write(toFile: config, atomically: true, encoding: .utf8)
        let daemon = try LiveDaemon(["--config", config], directory: dir)
        defer { daemon.stop() }

        // The namespace's history fills with its own listener's samples.
        let path = "/api/v1/ports/tcp/\(port)/history?since=1h"
        let theirs = daemon.within(samples: 40) { () -> [String: Any]? in
            guard let doc = daemon.get(path + "&netns=\(ns)")?.json,
                  doc.objects("samples").contains(where: { ownerPids($0).contains(insidePid) }),
                  doc.objects("samples").count >= 3 else { return nil }
            return doc
        }
        let doc = try #require(theirs, "no history of \(ns): \(daemon.log.text.suffix(2000))")
        #expect(doc.string("netns") == ns)
        #expect(doc.int("port") == Int(port))
        #expect(doc.objects("samples").allSatisfy { $0.bool("listening") == true })
        #expect(doc.objects("samples").allSatisfy { !ownerPids($0).contains(hostPid) })

        // Without netns (and with netns=host): the host's own listener, never the namespace's.
        for query in ["", "&netns=host"] {
            let ours = try #require(daemon.get(path + query)?.json)
            #expect(ours["netns"] == nil)
            #expect(ours.objects("samples").contains { ownerPids($0).contains(hostPid) }, "\(query)")
            #expect(ours.objects("samples").allSatisfy { !ownerPids($0).contains(insidePid) }, "\(query)")
        }

        // Bad and unknown values: 400 with a JSON error.
        for query in ["&netns=a%2Fb", "&netns=net:%5Bnope%5D", "&netns=pwh-none-\(getpid())"] {
            let response = try #require(daemon.get(path + query))
            #expect(response.status == 400, "\(query): \(response.body)")
            #expect(response.json?.string("error")?.isEmpty == false, "\(query)")
        }

        // `portwatch history --netns` reads the same file directly, while the daemon writes it.
        let cli = runPortwatch(["history", String(port), "--netns", ns, "--db", daemon.database, "--json"], timeout: 30)
        #expect(cli.status == 0, "\(cli)")
        let series = try #require(cli.json()?.objects("history"))
        #expect(series.count == 1)
        #expect(series.first?.string("netns") == ns)
        #expect(series.first?.objects("samples").contains { ownerPids($0).contains(insidePid) } == true)
        #expect(series.first?.objects("samples").allSatisfy { !ownerPids($0).contains(hostPid) } == true)

        let hostCLI = runPortwatch(["history", String(port), "--db", daemon.database, "--json"], timeout: 30)
        #expect(hostCLI.status == 0, "\(hostCLI)")
        let hostSeries = try #require(hostCLI.json()?.objects("history"))
        #expect(hostSeries.count == 1)
        #expect(hostSeries.first?["netns"] == nil)
        #expect(hostSeries.first?.objects("samples").allSatisfy { !ownerPids($0).contains(insidePid) } == true)

        let table = runPortwatch(["history", String(port), "--netns", ns, "--db", daemon.database], timeout: 30)
        #expect(table.status == 0, "\(table)")
        #expect(table.stdout.contains("\(ns) tcp/\(port)"), "\(table)")

        // Bad input: one line on stderr, exit 2.
        for value in ["a/b", "net:[x]", "pid:0", "pwh-none-\(getpid())"] {
            let bad = runPortwatch(["history", String(port), "--netns", value, "--db", daemon.database], timeout: 30)
            #expect(bad.status == 2, "\(value): \(bad)")
            #expect(bad.stderr.hasPrefix("portwatch: ") && bad.stderr.split(separator: "\n").count == 1, "\(value): \(bad)")
            #expect(bad.stdout.isEmpty, "\(value): \(bad)")
        }
        #expect(!daemon.run.child.reap(), "the daemon exited: \(daemon.log.text.suffix(2000))")
    }

    /// An unnamed namespace (`unshare -n`) is kept by its inode, `net:[INODE]`, the same label as
    /// its `/metrics` series; `history --netns pid:PID` finds it through a process inside.
    @Test func anUnnamedNamespaceIsKeptByItsInodeAndFoundByAProcessInside() throws {
        guard TestEnv.which("unshare") != nil else { return }
        let dir = try makeTemporaryDirectory("netns-history-unnamed")
        defer { removeTree(dir) }
        // Bound to the wildcard address: lo is down in a fresh namespace, so 127.0.0.1 is not there.
        let (holder, _) = try spawnPython(PythonServer.script, ["tcp:0.0.0.0:8080"], in: .unnamed)
        defer { holder.kill() }
        var st = stat()
        try #require(stat("/proc/\(holder.pid)/ns/net", &st) == 0)
        let label = "net:[\(st.st_ino)]"

        let config = dir + "/portwatch.yml"
        try "interval: 200ms\nnamespaces: all\nmetrics: {max_ports: 100000}\n".write(toFile: config, atomically: true, encoding: .utf8)
        let daemon = try LiveDaemon(["--config", config], directory: dir)
        defer { daemon.stop() }

        let encoded = label.replacingOccurrences(of: "[", with: "%5B").replacingOccurrences(of: "]", with: "%5D")
        let doc = daemon.within(samples: 40) { () -> [String: Any]? in
            guard let doc = daemon.get("/api/v1/ports/tcp/8080/history?since=1h&netns=\(encoded)")?.json,
                  doc.objects("samples").contains(where: { ownerPids($0).contains(holder.pid) }) else { return nil }
            return doc
        }
        #expect(doc?.string("netns") == label, "no history of \(label): \(daemon.log.text.suffix(2000))")
        let metrics = daemon.get("/metrics")?.body ?? ""
        #expect(metrics.split(separator: "\n").contains {
            $0.hasPrefix("portwatch_port_listening{") && $0.contains("netns=\"\(label)\"") && $0.contains("port=\"8080\"")
        }, "no series labelled \(label)")

        let cli = runPortwatch(["history", "8080", "--netns", "pid:\(holder.pid)", "--db", daemon.database, "--json"], timeout: 30)
        #expect(cli.status == 0, "\(cli)")
        let series = try #require(cli.json()?.objects("history").first)
        #expect(series.string("netns") == label)
        #expect(series.objects("samples").contains { ownerPids($0).contains(holder.pid) })
    }
}

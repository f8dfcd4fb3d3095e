// IPv6 and dual-stack sockets inside network namespaces of the test's own, each view compared
// with what `ip netns exec NS ss` says there: a dual-stack `[::]` listener, a v6-only `[::]`
// listener beside a `127.0.0.1` one on the same port, connections over `::1` and `127.0.0.1`
// (IPv4-mapped on the dual-stack listener), a bound-only IPv6 socket, and a second namespace
// with the same port numbers, whose rows must never mix with the first one's.

import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A python3 child holding, in its namespace, on ports DUAL, SPLIT and BOUND:
/// - `[::]:DUAL` dual-stack (IPV6_V6ONLY 0), with one connection over `::1` and one over
///   `127.0.0.1` (accepted as `::ffff:127.0.0.1`);
/// - `[::]:SPLIT` v6-only and `127.0.0.1:SPLIT`, one connection over `::1` and one over `127.0.0.1`;
/// - `[::1]:BOUND` bound, neither listening nor connected.
/// It prints its pid. On `go A B C D` it opens short connections (::1 → DUAL carrying A bytes,
/// 127.0.0.1 → DUAL B, ::1 → SPLIT C, 127.0.0.1 → SPLIT D), reads every byte on the server side,
/// aborts both ends (RST: a FIN would add one byte to the server's count) and prints `done`.
private let dualStackScript = #"""
import os, socket, struct, sys
dual, split, bound = (int(a) for a in sys.argv[1:4])
def v6(only):
    s = socket.socket(socket.AF_INET6)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1 if only else 0)
    return s
ds = v6(False); ds.bind(("::", dual)); ds.listen(16)
s6 = v6(True); s6.bind(("::", split)); s6.listen(16)
s4 = socket.socket(); s4.bind(("127.0.0.1", split)); s4.listen(16)
b = v6(True); b.bind(("::1", bound))
def pair(host, port, server):
    c = socket.create_connection((host, port))
    a, _ = server.accept()
    return c, a
held = [pair("::1", dual, ds), pair("127.0.0.1", dual, ds), pair("::1", split, s6), pair("127.0.0.1", split, s4)]
print(os.getpid(), flush=True)
for line in sys.stdin:
    words = line.split()
    if words and words[0] == "go":
        sizes = [int(w) for w in words[1:5]]
        for (host, port, server), n in zip((("::1", dual, ds), ("127.0.0.1", dual, ds),
                                             ("::1", split, s6), ("127.0.0.1", split, s4)), sizes):
            c, a = pair(host, port, server)
            c.sendall(b"x" * n)
            got = 0
            while got < n:
                got += len(a.recv(65536))
            for s in (c, a):
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                s.close()
        print("done", flush=True)
"""#

/// One namespace's dual-stack holder: its pid and namespace.
private struct DualStackHolder {
    let child: Child
    let pid: Int32
    let namespace: LabNamespace
}

/// The three ports, the same numbers in every namespace.
private struct DualStackPorts {
    let dual: UInt16
    let split: UInt16
    let bound: UInt16
    var list: String { "\(dual),\(split),\(bound)" }
}

/// A socket line of `ss -tanH`: state, local and peer endpoint (brackets removed).
private struct SSLine: Hashable {
    let state: String
    let local: String
    let localPort: Int
    let peer: String
    let peerPort: Int
}

/// `address` without brackets, `*` for ss's wildcard.
private func bare(_ address: Substring) -> String {
    String(address).replacingOccurrences(of: "[", with: "").replacingOccurrences(of: "]", with: "")
}

/// The truth: `ss -tanH` inside the namespace, one entry per socket.
private func ssSockets(_ lab: NamespaceLab, _ ns: String) throws -> [SSLine] {
    guard let ss = TestEnv.which("ss") else { throw SupportError("ss not found") }
    let r = lab.exec(ns, [ss, "-tanH"])
    guard r.status == 0 else { throw SupportError("ss in \(ns): \(r)") }
    return r.stdout.split(separator: "\n").compactMap { line -> SSLine? in
        let f = line.split(separator: " ", omittingEmptySubsequences: true)
        guard f.count >= 5, let lc = f[3].lastIndex(of: ":"), let pc = f[4].lastIndex(of: ":"),
              let lp = Int(f[3][f[3].index(after: lc)...]) else { return nil }
        return SSLine(state: String(f[0]), local: bare(f[3][..<lc]), localPort: lp,
                      peer: bare(f[4][..<pc]), peerPort: Int(f[4][f[4].index(after: pc)...]) ?? 0)
    }
}

/// A connection of `connections --json` the way ss writes it.
private func line(_ c: [String: Any]) -> String {
    let l = c.object("local"), p = c.object("peer")
    return "\(l?.string("address") ?? "?"):\(l?.int("port") ?? -1) \(p?.string("address") ?? "?"):\(p?.int("port") ?? -1)"
}

@Suite("namespaces: IPv6 and dual-stack sockets", .blocking, .serialized,
       .enabled(if: TestEnv.canCreateNamespaces && TestEnv.which("ss") != nil,
                "needs root, ip, ss and python3 to build network namespaces"))
struct NamespaceIPv6Tests {
    private func setUp() throws -> (NamespaceLab, DualStackPorts, [DualStackHolder]) {
        let pid = getpid(), k = NamespaceLab.nextSerial()
        let lab = try NamespaceLab(names: ["pw6-\(pid)-\(k)a", "pw6-\(pid)-\(k)b"])
        // Our own namespaces hold nothing else; numbers portwatch vouches for keep them apart from
        // the host's anyway, so a row that leaked from the host would not match by chance.
        let free = try Net.freePorts(3)
        let ports = DualStackPorts(dual: free[0], split: free[1], bound: free[2])
        var holders: [DualStackHolder] = []
        for ns in lab.namespaces {
            let (child, line) = try lab.startPython(dualStackScript, ["\(ports.dual)", "\(ports.split)", "\(ports.bound)"],
                                                    in: .named(ns.name))
            guard let pid = Int32(line) else { throw SupportError("holder in \(ns.name) said '\(line)'") }
            holders.append(DualStackHolder(child: child, pid: pid, namespace: ns))
        }
        return (lab, ports, holders)
    }

    /// `ports`, `check`, `who` and `connections` with `--netns`: each answer matches ss inside.
    @Test func everyViewOfOneNamespaceMatchesSS() throws {
        let (lab, ports, holders) = try setUp()
        defer { lab.destroy() }
        let me = holders[0]
        let ns = me.namespace.name
        let truth = try ssSockets(lab, ns)
        let established = truth.filter { $0.state == "ESTAB" }

        // ports: the dual-stack listener is `*`, the split one lists both sockets, the bound one is bound.
        let r = runPortwatch(["ports", ports.list, "--netns", ns, "--json"], timeout: 30)
        #expect(r.status == 0, "\(r)")
        let rows = try #require(r.json()?.objects("ports"))
        #expect(rows.count == 3, "\(r.stdout)")
        #expect(rows.allSatisfy { $0.namespaceInode == me.namespace.inode && $0.pids() == [me.pid] }, "\(r.stdout)")
        let dual = try #require(rows.first { $0.int("port") == Int(ports.dual) })
        #expect(dual.bool("listening") == true)
        #expect(dual.strings("addresses") == ["*"], "\(dual)")
        #expect(dual.objects("listeners").map { "\($0.string("address") ?? "?") \($0.bool("v6only").map(String.init) ?? "nil")" }
                == [":: false"], "\(dual)")
        #expect(dual.object("connections")?.int("established")
                == established.filter { $0.localPort == Int(ports.dual) }.count, "\(truth)")
        #expect(dual.object("connections")?.int("established") == 2)
        let split = try #require(rows.first { $0.int("port") == Int(ports.split) })
        #expect(Set(split.strings("addresses") ?? []) == ["127.0.0.1", "[::]"], "\(split)")
        #expect(split.objects("listeners").first { $0.string("address") == "::" }?.bool("v6only") == true, "\(split)")
        #expect(split.object("connections")?.int("established")
                == established.filter { $0.localPort == Int(ports.split) }.count, "\(truth)")
        #expect(split.object("connections")?.int("established") == 2)
        let bound = try #require(rows.first { $0.int("port") == Int(ports.bound) })
        #expect(bound.bool("listening") == false && bound.string("state") == "bound", "\(bound)")
        #expect(bound.int("bound_sockets") == 1, "\(bound)")

        // -4 and -6 split the connections by the client's family, each counted once: the
        // dual-stack listener is in both views, its IPv4 client (::ffff:127.0.0.1) only in -4's.
        for (flag, family) in [("-4", "IPv4"), ("-6", "IPv6")] {
            let v = runPortwatch(["ports", ports.list, "--netns", ns, flag, "--json"], timeout: 30)
            #expect(v.status == 0, "\(v)")
            let vRows = v.json()?.objects("ports") ?? []
            for port in [ports.dual, ports.split] {
                let row = vRows.first { $0.int("port") == Int(port) }
                #expect(row?.object("connections")?.int("established") == 1, "\(flag) tcp/\(port): one \(family) client; \(v.stdout)")
            }
            #expect(vRows.first { $0.int("port") == Int(ports.dual) }?.strings("addresses") == ["*"], "\(flag): \(v.stdout)")
        }

        // check: the dual-stack and split ports listen (and are busy); the bound-only one does not listen.
        for port in [ports.dual, ports.split] {
            let c = runPortwatch(["check", "\(port)", "--netns", ns, "--expect", "listening", "--json"], timeout: 30)
            #expect(c.status == 0, "\(c)")
            #expect(c.json()?.string("verdict") == "busy", "\(c)")
            #expect(c.json()?.namespaceInode == me.namespace.inode, "\(c)")
        }
        let b = runPortwatch(["check", "\(ports.bound)", "--netns", ns, "--expect", "listening", "--json"], timeout: 30)
        #expect(b.status == 1, "\(b)")
        #expect(b.json()?.bool("matched") == false, "\(b)")
        // Nothing at all on the next free number in there.
        let unused = try #require((1...200).lazy.map { ports.dual &+ UInt16($0) }
            .first { p in !truth.contains { $0.localPort == Int(p) } && ![ports.split, ports.bound].contains(p) })
        let f = runPortwatch(["check", "\(unused)", "--netns", ns, "--json"], timeout: 30)
        #expect(f.status == 0 && f.json()?.string("verdict") == "free", "\(f)")

        // who: the holder, with the sockets ss lists on each port.
        let w = runPortwatch(["who", ports.list, "--netns", ns, "--json"], timeout: 30)
        #expect(w.status == 0, "\(w)")
        let results = try #require(w.json()?.objects("results"))
        #expect(results.count == 3, "\(w.stdout)")
        for result in results {
            #expect(result.pids() == [me.pid], "\(result)")
            #expect(result.namespaceInode == me.namespace.inode, "\(result)")
        }
        let sockets = Dictionary(results.map { ($0.int("port") ?? 0, Set($0.objects("processes").first?.strings("sockets") ?? [])) },
                                 uniquingKeysWith: { a, _ in a })
        #expect(sockets[Int(ports.dual)]?.contains("tcp *:\(ports.dual) listen") == true, "\(sockets)")
        #expect(sockets[Int(ports.split)]?.isSuperset(of: ["tcp 127.0.0.1:\(ports.split) listen", "tcp [::]:\(ports.split) listen"]) == true,
                "\(sockets)")
        #expect(sockets[Int(ports.bound)] == ["tcp [::1]:\(ports.bound) bound"], "\(sockets)")

        // connections: exactly ss's established sockets on the two ports, addresses as ss writes
        // them (IPv4-mapped included), both ends of each loopback connection.
        let cr = runPortwatch(["connections", "\(ports.dual),\(ports.split)", "--netns", ns, "--json"], timeout: 30)
        #expect(cr.status == 0, "\(cr)")
        let got = Set((cr.json()?.objects("connections") ?? []).filter { $0.string("state") == "established" }.map(line))
        let wanted = Set(established.filter { [Int(ports.dual), Int(ports.split)].contains($0.localPort)
                                               || [Int(ports.dual), Int(ports.split)].contains($0.peerPort) }
            .map { "\($0.local):\($0.localPort) \($0.peer):\($0.peerPort)" })
        #expect(got == wanted, "portwatch \(got.sorted()) vs ss \(wanted.sorted())")
        #expect(got.contains { $0.hasPrefix("::ffff:127.0.0.1:\(ports.dual) ") }, "\(got.sorted())")
        #expect(got.count == 8, "\(got.sorted())")
    }

    /// `--all-namespaces`: two namespaces with the same port numbers, each row and connection
    /// in its own namespace with its own holder, the same as ss in each.
    @Test func twoNamespacesWithTheSamePortsNeverMix() throws {
        let (lab, ports, holders) = try setUp()
        defer { lab.destroy() }
        let r = runPortwatch(["ports", ports.list, "--all-namespaces", "--json"], timeout: 60)
        #expect(r.status == 0, "\(r)")
        let rows = try #require(r.json()?.objects("ports"))
        for h in holders {
            let mine = rows.filter { $0.namespaceInode == h.namespace.inode }
            #expect(Set(mine.compactMap { $0.int("port") }) == [Int(ports.dual), Int(ports.split), Int(ports.bound)], "\(h.namespace.name)")
            #expect(mine.count == 3, "\(h.namespace.name): \(mine)")
            #expect(mine.allSatisfy { $0.pids() == [h.pid] }, "\(h.namespace.name): \(mine)")
            #expect(mine.allSatisfy { $0.object("namespace")?.string("name") == h.namespace.name })
            #expect(mine.first { $0.int("port") == Int(ports.dual) }?.object("connections")?.int("established") == 2)
        }

        let w = runPortwatch(["who", "\(ports.dual)", "--all-namespaces", "--json"], timeout: 60)
        #expect(w.status == 0, "\(w)")
        let results = (w.json()?.objects("results") ?? []).filter { r in holders.contains { $0.namespace.inode == r.namespaceInode } }
        #expect(results.count == 2, "\(w.stdout)")
        for h in holders {
            #expect(results.first { $0.namespaceInode == h.namespace.inode }?.pids() == [h.pid], "\(w.stdout)")
        }

        let c = runPortwatch(["connections", "\(ports.dual),\(ports.split)", "--all-namespaces", "--json"], timeout: 60)
        #expect(c.status == 0, "\(c)")
        let connections = c.json()?.objects("connections") ?? []
        for h in holders {
            let got = Set(connections.filter { $0.namespaceInode == h.namespace.inode && $0.string("state") == "established" }.map(line))
            let wanted = Set(try ssSockets(lab, h.namespace.name).filter { $0.state == "ESTAB" }
                .map { "\($0.local):\($0.localPort) \($0.peer):\($0.peerPort)" })
            #expect(got == wanted, "\(h.namespace.name): portwatch \(got.sorted()) vs ss \(wanted.sorted())")
        }
    }

    /// `top --json --all-namespaces`: bytes over `::1` and IPv4-mapped connections that open and
    /// close between two refreshes count exactly, each in its namespace's rows.
    @Test func topCountsIPv6TrafficPerNamespaceExactly() throws {
        let (lab, ports, holders) = try setUp()
        defer { lab.destroy() }
        let run = try startPortwatchWhenReady(["top", "--json", "--all-namespaces", "--interval", "300ms",
                                               "--iterations", "200"])
        defer { run.child.kill() }
        // Different sizes per namespace and per path, so a byte counted in the wrong row shows.
        let sizes: [[Int]] = [[5000, 7000, 3000, 1100], [300, 900, 40000, 20]]
        for (h, s) in zip(holders, sizes) {
            try tell([h.child], "go " + s.map(String.init).joined(separator: " "), awaiting: "done")
        }
        var wanted: [String: Int] = [:]
        for (h, s) in zip(holders, sizes) {
            wanted["\(h.namespace.inode)/\(ports.dual)"] = s[0] + s[1]
            wanted["\(h.namespace.inode)/\(ports.split)"] = s[2] + s[3]
        }
        var got: [String: Int] = [:]
        var opened: [String: Int] = [:]
        var lines: [String] = []
        var extra = 0
        // Refreshes until every count is in, and two more: a byte counted twice or late shows there.
        while extra < 3, let text = run.child.readLine(timeout: 30) {
            lines.append(text)
            let doc = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any], "\(text)")
            for row in doc.objects("ports") {
                guard let inode = row.namespaceInode, holders.contains(where: { $0.namespace.inode == inode }),
                      let port = row.int("port"), let window = row.object("window") else { continue }
                let key = "\(inode)/\(port)"
                got[key, default: 0] += window.object("bytes")?.int("received") ?? 0
                opened[key, default: 0] += window.int("connections_opened") ?? 0
            }
            if wanted.allSatisfy({ got[$0.key] == $0.value }) { extra += 1 }
        }
        let tail = lines.suffix(2).joined(separator: "\n").prefix(6000)
        for (key, bytes) in wanted.sorted(by: { $0.key < $1.key }) {
            #expect(got[key] == bytes, "\(key): \(got[key] ?? 0) received, wanted \(bytes); \(tail)")
            #expect(opened[key] == 2, "\(key): \(opened[key] ?? 0) opened; \(tail)")
        }
        // The bound-only port carries nothing.
        for h in holders { #expect((got["\(h.namespace.inode)/\(ports.bound)"] ?? 0) == 0) }
    }
}

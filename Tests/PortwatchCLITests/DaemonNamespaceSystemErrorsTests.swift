// The daemon's `/api/v1/ports` with `namespaces:` (issue 9): `system_errors_by_namespace` has
// each watched namespace's own kernel counters next to the daemon's own namespace's, as
// `ports --sample --all-namespaces --json` has them. The daemon runs in a namespace of the
// test's own, so that its own counters are known to stay still (the host's move with every other
// test on this machine), and watches the two namespaces of a `CounterLab`, where the test makes
// known, different changes of their counters.

import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The `system_errors_by_namespace` entries of a document by their `netns`.
private func entriesByNetns(_ doc: [String: Any]) -> [String: [String: Any]] {
    var found: [String: [String: Any]] = [:]
    for entry in doc.objects("system_errors_by_namespace") {
        if let netns = entry.string("netns") { found[netns] = entry }
    }
    return found
}

/// Seconds since the epoch, as the daemon's `taken_at`.
private func wallClock() -> Double { Date().timeIntervalSince1970 }

private func number(_ doc: [String: Any], _ key: String) -> Double? { (doc[key] as? NSNumber)?.doubleValue }

private func same(_ a: [String: Any]?, _ b: [String: Any]?) -> Bool {
    guard let a, let b else { return false }
    return NSDictionary(dictionary: a).isEqual(to: b)
}

@Suite("namespaces: the daemon's system errors per namespace", .serialized, .blocking,
       .enabled(if: TestEnv.isRoot && TestEnv.canCreateNamespaces,
                "needs root (CAP_SYS_ADMIN to make and enter namespaces), ip and python3"))
struct DaemonNamespaceSystemErrorsTests {
    /// Refused connects in one watched namespace and datagrams to a closed port in the other are
    /// each counted, exactly, in that namespace's entry of `/api/v1/ports`, and not in the
    /// other's nor in the daemon's own (`"netns": "host"`), which stays the top-level
    /// `system_errors`; `?netns=` narrows the list to that one namespace.
    @Test func eachWatchedNamespacesEntryHasItsOwnCounts() throws {
        let lab = try CounterLab()
        defer { lab.destroy() }
        let (a, b) = (lab.members[0], lab.members[1])
        let homeLab = try NamespaceLab(names: ["pwsd-\(getpid())-\(NamespaceLab.nextSerial())-home"])
        defer { homeLab.destroy() }
        let home = homeLab.names[0]

        let dir = try makeTemporaryDirectory("netns-syserr")
        defer { removeTree(dir) }
        let config = dir + "/portwatch.yml"
        try "interval: 500ms\nnamespaces: [\(a.name), \(b.name)]\n".write(toFile: config, atomically: true, encoding: .utf8)
        let daemon = try LiveDaemon(["--config", config], directory: dir, netns: home)
        defer { daemon.stop() }
        let everyone: Set<String> = ["host", a.name, b.name]

        // A document with a window of each of the three namespaces.
        func current(after taken: Double) -> [String: Any]? {
            daemon.within(samples: 20) { () -> [String: Any]? in
                guard let doc = daemon.get("/api/v1/ports")?.json, let at = number(doc, "taken_at"), at > taken,
                      Set(entriesByNetns(doc).keys) == everyone else { return nil }
                return doc
            }
        }
        let first = try #require(current(after: 0), "no entry of every namespace: \(daemon.log.text.suffix(3000))")
        let list = first.objects("system_errors_by_namespace")
        #expect(list.first?.string("netns") == "host", "the daemon's own comes first: \(list)")
        let byNetns = entriesByNetns(first)
        #expect(byNetns["host"]?.object("namespace")?.bool("own") == true)
        #expect(byNetns["host"]?.object("namespace")?.string("name") == home)
        #expect(byNetns[a.name]?.namespaceInode == a.inode)
        #expect(byNetns[b.name]?.namespaceInode == b.inode)

        let wanted = ["host": RefusalCounts(),
                      a.name: RefusalCounts(attemptFails: 3, outRsts: 3, udpNoPorts: 0),
                      b.name: RefusalCounts(attemptFails: 0, outRsts: 0, udpNoPorts: 4)]
        // Windows are read one after another, each once; a window missed (the machine too busy
        // to ask within an interval) makes the round inconclusive, and the counters are moved
        // again in the next one.
        var concluded = false
        var start = first
        for round in 0..<3 where !concluded {
            if round > 0 {
                // The windows counted from here on were all read after the last round's refusals.
                start = try #require(current(after: wallClock()), "no sample: \(daemon.log.text.suffix(2000))")
            }
            try lab.refuse(in: a, connects: 3, datagrams: 0)
            try lab.refuse(in: b, connects: 0, datagrams: 4)
            var got: [String: RefusalCounts] = [:]
            var previous = try #require(number(start, "taken_at"))
            var missed = false
            var seen: [String] = []
            // Until both counts are in, and two windows more: a count arriving late, twice, or
            // in the wrong namespace would show there.
            var extra = 0
            for _ in 0..<60 where extra < 2 {
                guard let doc = current(after: previous), let at = number(doc, "taken_at"),
                      let seconds = number(doc, "window_seconds") else { missed = true; break }
                if abs((at - previous) - seconds) > 0.25 * seconds { missed = true; break }
                previous = at
                seen.append(String(String(describing: doc["system_errors_by_namespace"] ?? "").prefix(3000)))
                let entries = entriesByNetns(doc)
                #expect(doc.objects("system_errors_by_namespace").count == 3)
                for (netns, entry) in entries { got[netns, default: RefusalCounts()].add(entry.object("system_errors")) }
                // The top-level object stays the daemon's own namespace's.
                #expect(same(doc.object("system_errors"), entries["host"]?.object("system_errors")), "\(doc)")
                if got == wanted { extra += 1 }
            }
            if missed { continue }
            concluded = true
            for netns in everyone.sorted() {
                #expect(got[netns] == wanted[netns], "\(netns): \(String(describing: got[netns])); \(seen.suffix(3))")
            }
        }
        #expect(concluded, "every round missed a window: \(daemon.log.text.suffix(2000))")

        // `?netns=` keeps that namespace's entry alone; its counters are then the top-level ones.
        for netns in [a.name, "host"] {
            let doc = try #require(daemon.get("/api/v1/ports?netns=\(netns)")?.json)
            let narrowed = doc.objects("system_errors_by_namespace")
            #expect(narrowed.map { $0.string("netns") } == [netns], "\(netns): \(narrowed)")
            #expect(same(doc.object("system_errors"), narrowed.first?.object("system_errors")), "\(netns): \(doc)")
        }
        #expect(!daemon.run.child.reap(), "the daemon exited: \(daemon.log.text.suffix(2000))")
    }
}

// History of other network namespaces (issue 9): the namespace is part of the history key, a
// database of the release before migrates in place, roll-ups and retention keep namespaces
// apart, and `?netns=` reads one of them.

import Foundation
import GRDB
import Hummingbird
import HummingbirdTesting
import PortwatchCore
@testable import PortwatchMonitor
import Testing
#if canImport(Glibc)
import Glibc
#endif

private func scratch() throws -> String {
    let path = NSTemporaryDirectory() + "pw-nshist-\(getpid())-\(UUID().uuidString.prefix(8))"
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

/// A sample of tcp/`port` in `namespace` with `established` connections and `rx` bytes in a 10 s window.
private func sample(_ time: Double, port: UInt16 = 8080, namespace: String? = nil, established: Int, rx: UInt64,
                    owner: String = "nginx[42]") -> PortSample {
    var c = ConnectionCounts()
    c.established = established
    var s = PortSample(time: time, proto: .tcp, port: port, listening: true, connections: c, acceptQueue: 0,
                       acceptQueueMax: 128, windowSeconds: 10, bytesReceived: rx, bytesSent: rx / 2,
                       packetsReceived: rx / 100, packetsSent: rx / 200, owners: [owner], executables: ["/usr/bin/x"])
    s.namespace = namespace
    return s
}

private func counts(_ store: HistoryStore) throws -> [String: Int] {
    Dictionary(uniqueKeysWithValues: try store.rowCounts())
}

@Suite struct HistoryNamespaceStoreTests {
    /// A file written by the release before namespaces (schema v1 + v2-probes, rows as that
    /// release wrote them) opens, migrates in place and keeps every row as the host's; samples of
    /// other namespaces then go next to them without touching them.
    @Test func aDatabaseOfThePreviousReleaseMigratesInPlaceAndKeepsEveryRow() throws {
        let dir = try scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/history.sqlite"
        let t0 = 1_800_000_000.0 - 1_800_000_000.0.truncatingRemainder(dividingBy: 3600)
        do {
            // The old release's own migrations, then rows in its layout: the key is
            // (udp << 16 | port), raw `t` in milliseconds, roll-up `t` in seconds.
            let old = try DatabasePool(path: path)
            try HistorySchema.migrator.migrate(old, upTo: "v2-probes")
            try old.write { db in
                let columns = HistorySchema.rawColumns
                for i in 0..<30 {
                    let t = Int64(t0 * 1000) + Int64(i) * 10_000
                    try db.execute(sql: "INSERT INTO sample_raw (\(columns)) VALUES (8080, ?, 1, 1, \(i), 0, 0, 0, 0, 0, 0, 0, 128, 10000, \(1000 * i), 500, 10, 5, 1, 1, 0, 0, 2, 0, 0, 1)",
                                   arguments: [t])
                }
                try db.execute(sql: "INSERT INTO sample_raw (\(columns)) VALUES (\(1 << 16 | 53), ?, 1, 1, 0, 0, 0, 0, 0, 0, 0, NULL, 0, 10000, 77, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, NULL)",
                               arguments: [Int64(t0 * 1000)])
                try db.execute(sql: "INSERT INTO sample_minute (key, t, n, listening, established, rx_bytes, window_ms) VALUES (8080, ?, 6, 6, 60, 6000, 60000)",
                               arguments: [Int64(t0) - 3600])
                try db.execute(sql: "INSERT INTO port (key, first_s, last_s, listened_s) VALUES (8080, ?, ?, ?), (\(1 << 16 | 53), ?, ?, ?)",
                               arguments: [Int64(t0) - 3600, Int64(t0) + 290, Int64(t0) - 3600, Int64(t0), Int64(t0), Int64(t0)])
                try db.execute(sql: "INSERT INTO label (id, text) VALUES (1, ?)", arguments: [OwnerLabel.encode(["nginx[42]"], ["/usr/sbin/nginx"])])
                try db.execute(sql: "INSERT INTO event (t, kind, key, message, details) VALUES (?, 'listener_started', 8080, 'tcp/8080 started listening', NULL)",
                               arguments: [Int64(t0 * 1000)])
                try db.execute(sql: "INSERT INTO alert (t, rule, state, severity, key, metric, value, threshold, message, instance) VALUES (?, 'busy', 'firing', 'warning', 8080, 'connections', 29, 10, 'busy', 'h')",
                               arguments: [Int64(t0 * 1000)])
                try db.execute(sql: "INSERT INTO meta (name, value) VALUES ('first_s', ?), ('last_ms', ?), ('sample_minute_done', ?)",
                               arguments: [Int64(t0) - 3600, Int64(t0 * 1000) + 290_000, Int64(t0)])
            }
        }
        let before = try DatabaseQueue(path: path).read { db in
            try String.fetchAll(db, sql: "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").map { table in
                (table, try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM \"\(table)\"") ?? 0)
            }
        }

        let store = try HistoryStore(path: path)
        let applied = try store.read { db in try HistorySchema.migrator.appliedIdentifiers(db) }
        #expect(applied.contains("v3-netns"))
        // Every table keeps every row (grdb_migrations gains the one migration).
        let after = try store.read { db in
            try Dictionary(uniqueKeysWithValues: before.map { table, _ in
                (table, try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM \"\(table)\"") ?? 0)
            })
        }
        for (table, count) in before {
            #expect(after[table] == (table == "grdb_migrations" ? count + 1 : count), "\(table)")
        }

        // The old rows are the host's, and read as before.
        let web = MonitoredPort(proto: .tcp, port: 8080)
        let series = try store.history(web, since: t0, until: t0 + 300, step: nil)
        #expect(series.namespace == nil)
        #expect(series.samples.count == 30)
        #expect(series.samples.map(\.connections.established) == Array(0..<30))
        #expect(series.samples.last?.bytesReceived == 29_000)
        #expect(series.samples.first?.owners == ["nginx[42]"])
        #expect(try store.history(web, since: t0 - 3600, until: t0 - 1, step: 60).samples.first?.connections.established == 10)
        #expect(try store.ports() == [MonitoredPort(proto: .tcp, port: 8080), MonitoredPort(proto: .udp, port: 53)])
        #expect(try store.everListened() == [MonitoredPort(proto: .tcp, port: 8080), MonitoredPort(proto: .udp, port: 53)])
        #expect(try store.events(since: t0 - 1, port: 8080, limit: 10).map(\.kind) == [.listenerStarted])
        #expect(try store.alerts(since: t0 - 1, limit: 10).map(\.rule) == ["busy"])

        // A namespace's tcp/8080 goes beside ours, and neither sees the other's samples.
        try store.write(samples: (0..<5).map { sample(t0 + 300 + Double($0) * 10, namespace: "web", established: 100, rx: 9) },
                        events: [])
        #expect(try store.history(web, since: t0, until: t0 + 400, step: nil).samples.count == 30)
        let theirs = try store.history(MonitoredPort(proto: .tcp, port: 8080, namespace: "web"), since: t0, until: t0 + 400, step: nil)
        #expect(theirs.namespace == "web")
        #expect(theirs.samples.count == 5)
        #expect(theirs.samples.allSatisfy { $0.connections.established == 100 && $0.namespace == "web" })

        // The CLI's read-only opening reads the migrated file too.
        let reader = try HistoryStore.openReadOnly(path: path)
        #expect(try reader.history(web, since: t0, until: t0 + 400, step: nil).samples.count == 30)
    }

    /// `portwatch history` may read a file an older daemon still writes (not migrated yet):
    /// the host's history reads as before and a namespace is simply unknown.
    @Test func aReaderOfAnUnmigratedFileSeesTheHostAndNoNamespace() throws {
        let dir = try scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/old.sqlite"
        do {
            let old = try DatabasePool(path: path)
            try HistorySchema.migrator.migrate(old, upTo: "v2-probes")
            try old.write { db in
                try db.execute(sql: "INSERT INTO sample_raw (\(HistorySchema.rawColumns)) VALUES (8080, 1800000000000, 1, 1, 4, 0, 0, 0, 0, 0, 0, 0, 0, 10000, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, NULL)")
                try db.execute(sql: "INSERT INTO port (key, first_s, last_s, listened_s) VALUES (8080, 1800000000, 1800000000, 1800000000)")
                try db.execute(sql: "INSERT INTO meta (name, value) VALUES ('first_s', 1800000000), ('last_ms', 1800000000000)")
            }
        }
        let reader = try HistoryStore.openReadOnly(path: path)
        #expect(try reader.ports() == [MonitoredPort(proto: .tcp, port: 8080)])
        #expect(try reader.history(MonitoredPort(proto: .tcp, port: 8080), since: 0, step: nil).samples.map(\.connections.established) == [4])
        let error = #expect(throws: PortwatchError.self) {
            try reader.history(MonitoredPort(proto: .tcp, port: 8080, namespace: "web"), since: 0, step: nil)
        }
        #expect(error?.kind == .usage)
    }

    /// Three hours of the same port number in three namespaces: every resolution keeps each
    /// namespace's own numbers, retention cuts them alike, and a namespace whose samples are all
    /// past retention is forgotten.
    @Test func rollUpsAndRetentionKeepNamespacesApart() throws {
        let dir = try scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var retention = Retention()
        retention.raw = .seconds(3600)
        retention.minute = .seconds(2 * 3600)
        retention.hour = .seconds(4 * 3600)
        let store = try HistoryStore(path: dir + "/h.sqlite", retention: retention)
        let t0 = 1_800_000_000.0 - 1_800_000_000.0.truncatingRemainder(dividingBy: 3600)
        let spaces: [(String?, Int, UInt64)] = [(nil, 10, 1000), ("web", 20, 3000), ("net:[4026532999]", 30, 7000)]
        var t = t0
        while t < t0 + 3 * 3600 {
            try store.write(samples: spaces.map { sample(t, namespace: $0.0, established: $0.1, rx: $0.2) }, events: [])
            // A namespace seen only in the first ten minutes.
            if t < t0 + 600 { try store.write(samples: [sample(t, port: 9090, namespace: "gone", established: 1, rx: 1)], events: []) }
            if Int(t - t0) % 60 == 0 { try store.maintain(now: t) }
            t += 10
        }
        let end = t0 + 3 * 3600
        try store.maintain(now: end)
        for (namespace, established, rx) in spaces {
            let port = MonitoredPort(proto: .tcp, port: 8080, namespace: namespace)
            for step in [60.0, 3600.0] {
                let series = try store.history(port, since: t0, until: end, step: step)
                #expect(series.namespace == namespace)
                #expect(!series.samples.isEmpty)
                for s in series.samples where s.windowSeconds == step {
                    #expect(s.connections.established == established, "\(namespace ?? "host") step \(step)")
                    #expect(s.bytesReceived == rx * UInt64(step / 10), "\(namespace ?? "host") step \(step)")
                    #expect(s.namespace == namespace)
                }
            }
            // Raw rows older than the raw retention are gone in every namespace alike.
            let raw = try store.history(port, since: t0, until: end, step: 1)
            #expect(raw.samples.first.map { $0.time >= end - 3600 } == true)
            #expect(raw.samples.allSatisfy { $0.connections.established == established })
        }
        #expect(try store.everListened() == Set(spaces.map { MonitoredPort(proto: .tcp, port: 8080, namespace: $0.0) }
                                                 + [MonitoredPort(proto: .tcp, port: 9090, namespace: "gone")]))

        // Past the hour retention the short-lived namespace and its id go; the others stay.
        try store.maintain(now: t0 + 600 + 4 * 3600 + 60)
        #expect(try store.ports() == spaces.map { MonitoredPort(proto: .tcp, port: 8080, namespace: $0.0) }.sorted())
        let error = #expect(throws: PortwatchError.self) {
            try store.history(MonitoredPort(proto: .tcp, port: 9090, namespace: "gone"), since: t0, step: nil)
        }
        #expect(error?.kind == .usage)
        #expect(error?.message.contains("'gone'") == true)
        #expect(error?.message.contains("web") == true)
        #expect(try store.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM netns") } == 2)
    }

    /// The host's tcp/8080 and a namespace's tcp/8080 written in one batch stay two series,
    /// each with its own owners.
    @Test func oneBatchOfSeveralNamespacesStaysApart() throws {
        let dir = try scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let store = try HistoryStore(path: dir + "/h.sqlite")
        let t0 = 1_800_000_000.0
        try store.write(samples: [sample(t0, established: 1, rx: 5, owner: "host[1]"),
                                  sample(t0, namespace: "db", established: 2, rx: 6, owner: "db[2]"),
                                  sample(t0, namespace: "web", established: 3, rx: 7, owner: "web[3]")], events: [])
        for (namespace, owner) in [(nil, "host[1]"), ("db", "db[2]"), ("web", "web[3]")] as [(String?, String)] {
            let s = try store.history(MonitoredPort(proto: .tcp, port: 8080, namespace: namespace), since: t0 - 1, step: nil).samples
            #expect(s.map(\.owners) == [[owner]])
        }
        #expect(try counts(store)["raw"] == 3)
    }
}

@Suite struct HistoryNamespaceParameterTests {
    @Test func namesInodesAndHostAreAccepted() throws {
        #expect(try HistoryNamespace.parse("host", option: "--netns") == nil)
        #expect(try HistoryNamespace.parse("web-1", option: "--netns") == "web-1")
        #expect(try HistoryNamespace.parse("net:[4026532999]", option: "--netns") == "net:[4026532999]")
        // Our own process is in our own namespace: the host.
        #expect(try HistoryNamespace.parse("pid:\(getpid())", option: "--netns") == nil)
    }

    @Test(arguments: ["", "a/b", ".", "..", "net:[]", "net:[x1]", "net:[-3]", "net:[+3]", "pid:", "pid:0", "pid:abc",
                      "pid:2147483647", "bad\u{1}name", String(repeating: "n", count: 256)])
    func badValuesAreUsageErrorsNamingTheOption(text: String) {
        let error = #expect(throws: PortwatchError.self) { try HistoryNamespace.parse(text, option: "--netns") }
        #expect(error?.kind == .usage)
        #expect(error?.message.hasPrefix("--netns ") == true)
        #expect(error?.message.contains("\n") == false)
    }
}

@Suite struct HistoryNamespaceAPITests {
    /// `?netns=` reads that namespace's history from the real store; without it (or with
    /// `host`) the daemon's own, as before; bad or unknown values are 400 with a JSON error.
    @Test func netnsPicksTheNamespaceAndDefaultsToTheHost() async throws {
        let dir = try scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let store = try HistoryStore(path: dir + "/h.sqlite")
        let now = Date().timeIntervalSince1970
        try store.write(samples: (1...3).flatMap { i in
            [sample(now - 60 * Double(i), established: 5, rx: 100),
             sample(now - 60 * Double(i), namespace: "web", established: 50, rx: 900)]
        }, events: [])
        let state = MonitorState(interval: .seconds(5), history: StoredHistory(store: store))
        let app = buildApplication(source: state, options: HTTPOptions(listen: ListenAddress(host: "127.0.0.1", port: 0)),
                                   metrics: PortMetrics())
        try await app.test(.router) { client in
            for (query, expected, netns) in [("", 5, nil), ("&netns=host", 5, nil), ("&netns=web", 50, "web")] as [(String, Int, String?)] {
                try await client.execute(uri: "/api/v1/ports/tcp/8080/history?since=1h" + query, method: .get) { response in
                    #expect(response.status == .ok)
                    let doc = try decodeJSONObject(String(buffer: response.body))
                    #expect(doc["netns"] as? String == netns, "\(query)")
                    #expect((doc["netns"] != nil) == (netns != nil))
                    let samples = try #require(doc["samples"] as? [[String: Any]])
                    #expect(samples.count == 3)
                    #expect(samples.allSatisfy { ($0["connections"] as? [String: Any])?["established"] as? Int == expected }, "\(query)")
                }
            }
            for query in ["netns=", "netns=a%2Fb", "netns=net:%5Bx%5D", "netns=pid:abc", "netns=nowhere"] {
                try await client.execute(uri: "/api/v1/ports/tcp/8080/history?" + query, method: .get) { response in
                    #expect(response.status == .badRequest, "\(query)")
                    let error = try decodeJSONObject(String(buffer: response.body))
                    #expect(error.count == 1)
                    #expect((error["error"] as? String)?.contains("netns") == true || (error["error"] as? String)?.contains("namespace") == true,
                            "\(query): \(error)")
                }
            }
        }
    }

    /// The stream's rows of other namespaces say which, so the dashboard keeps them apart from ours.
    @Test func streamRowsOfOtherNamespacesCarryNetns() throws {
        var latest = try LoopbackSampler.once()
        latest.samples = [sample(1_800_000_000, established: 1, rx: 0),
                          sample(1_800_000_000, namespace: "web", established: 2, rx: 0)]
        let doc = APIDocuments.streamSample(latest, services: .builtIn).serialized()
        let ports = try #require(try decodeJSONObject(doc)["ports"] as? [[String: Any]])
        #expect(ports.count == 2)
        #expect(ports.filter { $0["netns"] == nil }.map { $0["port"] as? Int } == [8080])
        #expect(ports.filter { $0["netns"] as? String == "web" }.map { $0["port"] as? Int } == [8080])
    }
}

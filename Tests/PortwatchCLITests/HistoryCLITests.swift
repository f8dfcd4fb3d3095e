// `portwatch history` and `portwatch events` against databases written by the daemon's store
// code (through `portwatch-bench`, built beside `portwatch`).
import Foundation
import Testing
import PortwatchTestSupport
#if canImport(Glibc)
import Glibc
#endif

private let benchPath = (TestEnv.portwatchPath as NSString).deletingLastPathComponent + "/portwatch-bench"

/// A directory with a database holding 2 busy ports (10000, 10001) over the last 2.4 hours.
private final class FilledDatabase: @unchecked Sendable {
    let dir: String
    var path: String { dir + "/history.sqlite" }

    init() throws {
        dir = NSTemporaryDirectory() + "pw-historycli-\(getpid())-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let fill = runTool(benchPath, ["history-fill", "--ports", "2", "--days", "0.1", "--interval", "5s", "--db", dir + "/history.sqlite"],
                           timeout: 120)
        guard fill.status == 0 else { throw SupportError("history-fill failed: \(fill.stderr)") }
    }

    deinit { try? FileManager.default.removeItem(atPath: dir) }
}

private func parse(_ text: String) -> [String: Any]? {
    (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any]
}

@Suite(.serialized, .blocking) struct HistoryCLITests {
    @Test func historyJSONHasOneSeriesPerPortWithSamples() throws {
        let db = try FilledDatabase()
        let r = runPortwatch(["history", "10000-10001,10005", "--db", db.path, "--json"])
        #expect(r.status == 0, "\(r)")
        let series = parse(r.stdout)?.objects("history") ?? []
        #expect(series.map { $0.int("port") } == [10000, 10001])
        let first = try #require(series.first)
        #expect(first.string("protocol") == "tcp")
        #expect((first["step_seconds"] as? NSNumber)?.doubleValue == 5)
        let samples = first.objects("samples")
        // One hour (the default --since) of 5 s samples.
        #expect(samples.count >= 715 && samples.count <= 721)
        let s = try #require(samples.last)
        for key in ["time", "connections", "bytes", "packets", "rates", "errors"] { #expect(s[key] != nil, "missing \(key)") }
        #expect((s.object("connections")?.int("established") ?? 0) > 0)
        #expect((s.object("rates")?["received_bps"] as? NSNumber)?.doubleValue ?? 0 > 0)
    }

    @Test func historyStepAggregatesAndTheTableHasSparklines() throws {
        let db = try FilledDatabase()
        let r = runPortwatch(["history", "10000", "--db", db.path, "--since", "2h", "--step", "1m", "--json"])
        #expect(r.status == 0, "\(r)")
        let first = try #require(parse(r.stdout)?.objects("history").first)
        #expect((first["step_seconds"] as? NSNumber)?.doubleValue == 60)
        let samples = first.objects("samples")
        #expect(samples.count >= 119 && samples.count <= 121)
        #expect((samples.dropLast().last?["seconds"] as? NSNumber)?.doubleValue == 60)

        let table = runPortwatch(["history", "10000", "--db", db.path, "--step", "5m"])
        #expect(table.status == 0, "\(table)")
        #expect(table.stdout.contains("tcp/10000  step 5m"))
        #expect(table.stdout.contains("connections ") && table.stdout.contains("traffic "))
        #expect(table.stdout.contains("TIME") && table.stdout.contains("RX/s"))
    }

    @Test func historyExitCodes() throws {
        let db = try FilledDatabase()
        let none = runPortwatch(["history", "9", "--db", db.path])
        #expect(none.status == 1, "\(none)")
        for bad in [["--since", "soon"], ["--since", "0s"], ["--step", "10ms"], ["--step", "x"]] {
            let r = runPortwatch(["history", "10000", "--db", db.path] + bad)
            #expect(r.status == 2, "\(bad): \(r)")
            #expect(r.stderr.hasPrefix("portwatch: ") && r.stderr.split(separator: "\n").count == 1, "\(bad): \(r)")
        }
        let badPort = runPortwatch(["history", "99999", "--db", db.path])
        #expect(badPort.status == 2, "\(badPort)")

        let garbage = db.dir + "/garbage.sqlite"
        try Data((0..<4096).map { UInt8(truncatingIfNeeded: $0 &* 13) }).write(to: URL(fileURLWithPath: garbage))
        let g = runPortwatch(["history", "10000", "--db", garbage])
        #expect(g.status == 2)
        #expect(g.stderr == "portwatch: \(garbage): not an SQLite database\n", "\(g)")

        let missing = runPortwatch(["events", "--db", db.dir + "/none.sqlite"])
        #expect(missing.status == 2)
        #expect(missing.stderr.hasPrefix("portwatch: \(db.dir)/none.sqlite: "), "\(missing)")
        #expect(!FileManager.default.fileExists(atPath: db.dir + "/none.sqlite"))
    }

    @Test func eventsJSONAndFollow() throws {
        let db = try FilledDatabase()
        let all = runPortwatch(["events", "--db", db.path, "--since", "1d", "--json"])
        #expect(all.status == 0, "\(all)")
        let events = parse(all.stdout)?.objects("events") ?? []
        #expect(events.count == 2)
        #expect(events.first?.string("kind") == "listener_started")
        #expect(events.first?.string("protocol") == "tcp")
        #expect(events.first?.int("port") == 10000)
        #expect(events.first?.string("time")?.hasSuffix("Z") == true)
        let onePort = runPortwatch(["events", "--db", db.path, "--since", "1d", "--port", "10001", "--json"])
        #expect((parse(onePort.stdout)?.objects("events") ?? []).map { $0.int("port") } == [10001])
        #expect(runPortwatch(["events", "--db", db.path, "--since", "-"]).status == 2)

        let follow = try startPortwatch(["events", "--db", db.path, "--since", "1d", "--follow", "--json"])
        var lines: [[String: Any]] = []
        for _ in 0..<2 { if let line = follow.child.readLine(timeout: 10), let o = parse(line) { lines.append(o) } }
        #expect(lines.count == 2)
        // A writer adds an event while `events --follow` polls: it shows up as one more line.
        let writer = runTool(benchPath, ["history-write-loop", "--db", db.path, "--count", "1", "--interval", "1ms"], timeout: 30)
        #expect(writer.status == 0, "\(writer.stderr)")
        let next = follow.child.readLine(timeout: 10).flatMap(parse)
        #expect(next?.int("port") == 20000)
        #expect(next?.string("message") == "batch 0")
        kill(follow.child.pid, SIGTERM)
        let end = follow.finish(timeout: 10)
        #expect(end.status == 0, "\(end)")
    }
}

import Foundation
import GRDB
import PortwatchCore
import Testing
@testable import PortwatchMonitor
#if canImport(Glibc)
import Glibc
#endif

/// A fresh directory under /tmp, removed by the caller.
private func tempDirectory() throws -> String {
    let path = NSTemporaryDirectory() + "pw-history-\(getpid())-\(UUID().uuidString.prefix(8))"
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

private func fileSize(_ path: String) -> UInt64 {
    ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber)?.uint64Value ?? 0
}

/// A busy sample: `rx` bytes received over `window` seconds, `established` connections.
private func sample(_ time: Double, port: UInt16 = 8080, window: Double = 5, established: Int = 10, rx: UInt64 = 5000,
                    listening: Bool = true) -> PortSample {
    var c = ConnectionCounts()
    c.established = established
    return PortSample(time: time, proto: .tcp, port: port, listening: listening, connections: c, acceptQueue: 1,
                      acceptQueueMax: 128, windowSeconds: window, bytesReceived: rx, bytesSent: rx * 2,
                      packetsReceived: rx / 100, packetsSent: rx / 50, connectionsOpened: 1, connectionsClosed: 1,
                      retransmits: 2, owners: ["nginx[42]"], executables: ["/usr/sbin/nginx"])
}

private func retention(raw: Int64, minute: Int64, hour: Int64) -> Retention {
    var r = Retention()
    r.raw = .seconds(raw)
    r.minute = .seconds(minute)
    r.hour = .seconds(hour)
    return r
}

private func rows(_ store: HistoryStore) throws -> [String: Int] {
    Dictionary(uniqueKeysWithValues: try store.rowCounts())
}

@Suite struct HistoryStoreTests {
    @Test func samplesAndEventsRoundTrip() throws {
        let dir = try tempDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let store = try HistoryStore(path: dir + "/a/b/history.sqlite")
        let t0 = 1_800_000_000.0
        let written = (0..<10).map { sample(t0 + Double($0) * 5, established: $0) }
        let event = MonitorEvent(time: t0, kind: .listenerStarted, proto: .tcp, port: 8080, message: "up",
                                 details: ["address": "0.0.0.0"])
        try store.write(samples: Array(written[0..<5]), events: [event])
        try store.write(samples: Array(written[5...]), events: [])
        try store.write(samples: [sample(t0, port: 53, listening: false)], events: [])

        let series = try store.history(MonitoredPort(proto: .tcp, port: 8080), since: t0 - 1, until: t0 + 100, step: nil)
        #expect(series.samples == written.map { var s = $0; s.addresses = []; return s })
        #expect(series.stepSeconds == 5)
        #expect(try store.events(since: t0 - 1, port: 8080, limit: 10) == [event])
        #expect(try store.events(since: t0 - 1, port: 53, limit: 10).isEmpty)
        #expect(try store.everListened() == [MonitoredPort(proto: .tcp, port: 8080)])
        #expect(try store.latestTime() == t0 + 45)

        let reader = try HistoryStore.openReadOnly(path: store.path)
        #expect(try reader.history(MonitoredPort(proto: .tcp, port: 8080), since: t0, until: t0 + 100, step: nil).samples.count == 10)
        #expect(throws: PortwatchError.self) { try reader.write(samples: written, events: []) }
    }

    @Test func rollUpsSumWindowsAndAverageStateSoRatesMatch() throws {
        let dir = try tempDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let store = try HistoryStore(path: dir + "/h.sqlite")
        let port = MonitoredPort(proto: .tcp, port: 8080)
        let t0 = 1_800_000_000.0 - 1_800_000_000.0.truncatingRemainder(dividingBy: 3600)
        // Three hours of 5 s samples at a steady 1000 B/s, connections alternating 10 and 20.
        let samples = (0..<(3 * 720)).map { i in sample(t0 + Double(i) * 5, established: i % 2 == 0 ? 10 : 20) }
        for chunk in stride(from: 0, to: samples.count, by: 100) {
            try store.write(samples: Array(samples[chunk..<min(chunk + 100, samples.count)]), events: [])
        }
        try store.maintain(now: t0 + 3 * 3600 + 120)
        let counts = try rows(store)
        #expect(counts["minute"] == 180)
        #expect(counts["hour"] == 3)

        let minutes = try store.history(port, since: t0, until: t0 + 3600, step: 60)
        #expect(minutes.stepSeconds == 60)
        let m = try #require(minutes.samples.first)
        #expect(m.time == t0)
        #expect(m.windowSeconds == 60)
        #expect(m.bytesReceived == 12 * 5000)
        #expect(m.retransmits == 24)
        #expect(m.connections.established == 15)
        #expect(m.acceptQueue == 1 && m.acceptQueueMax == 128)

        let hours = try store.history(port, since: t0, until: t0 + 3 * 3600, step: 3600)
        #expect(hours.samples.count == 3)
        let h = try #require(hours.samples.first)
        #expect(h.windowSeconds == 3600 && h.bytesReceived == 720 * 5000 && h.connections.established == 15)
        // Steady traffic reads the same rate at every resolution.
        let raw = try store.history(port, since: t0, until: t0 + 60, step: nil).samples[1]
        #expect(raw.receivedBps == 8000)
        #expect(m.receivedBps == raw.receivedBps && h.receivedBps == raw.receivedBps && h.sentBps == raw.sentBps)
        // A step coarser than stored aggregates on the fly: 5 min from 1-min rows.
        let fives = try store.history(port, since: t0, until: t0 + 3600, step: 300)
        #expect(fives.samples.first?.bytesReceived == 60 * 5000 && fives.samples.first?.windowSeconds == 300)
    }

    @Test func retentionDeletesEachResolutionAndNoStepPicksTheFinestThatCovers() throws {
        let dir = try tempDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let store = try HistoryStore(path: dir + "/h.sqlite", retention: retention(raw: 3600, minute: 3 * 3600, hour: 5 * 3600))
        let port = MonitoredPort(proto: .tcp, port: 8080)
        let start = 1_800_000_000.0 - 1_800_000_000.0.truncatingRemainder(dividingBy: 3600)
        let end = start + 6 * 3600
        // Six hours at 10 s, maintained every minute like the daemon.
        var t = start
        while t < end {
            try store.write(samples: [sample(t, window: 10)], events: [MonitorEvent(time: t, kind: .ownerChanged, message: "x")].filter { _ in t == start })
            if Int(t - start) % 60 == 0 { try store.maintain(now: t) }
            t += 10
        }
        try store.maintain(now: end)
        let raw = try store.history(port, since: start, until: end, step: 1)
        #expect(raw.samples.first.map { $0.time >= end - 3600 } == true)
        let minutes = try store.history(port, since: start, until: end, step: 60)
        #expect(minutes.samples.first.map { $0.time >= end - 3 * 3600 } == true)
        let hours = try store.history(port, since: start, until: end, step: 3600)
        #expect(hours.samples.first.map { $0.time >= end - 5 * 3600 - 3600 } == true)
        #expect(hours.samples.first.map { $0.time >= start + 3600 } == true)
        // The event at the start is past the longest retention.
        #expect(try store.events(since: 0, port: nil, limit: 10).isEmpty)

        #expect(try store.history(port, since: end - 1800, until: end, step: nil).stepSeconds == 10)
        #expect(try store.history(port, since: end - 2 * 3600, until: end, step: nil).stepSeconds == 60)
        #expect(try store.history(port, since: end - 4 * 3600, until: end, step: nil).stepSeconds == 3600)
        // The newest minutes are not rolled up yet: the minute series still reaches them (from raw).
        #expect(minutes.samples.last.map { $0.time >= end - 120 } == true)
    }

    @Test func sizeCapKeepsTheFileUnderItsCap() throws {
        let dir = try tempDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let cap: UInt64 = 700_000
        let store = try HistoryStore(path: dir + "/h.sqlite", maxSize: cap)
        let start = 1_800_000_000.0
        // 20 ports for 25 minutes at 1 s: 30k raw rows, about 2 MB without the cap.
        for i in 0..<1500 {
            let t = start + Double(i)
            try store.write(samples: (0..<20).map { sample(t, port: UInt16(9000 + $0), window: 1) }, events: [])
            if i % 60 == 0 { try store.maintain(now: t) }
        }
        try store.maintain(now: start + 1500)
        try store.checkpoint()
        let size = fileSize(store.path) + fileSize(store.path + "-wal")
        #expect(size <= cap, "file is \(size) bytes, cap \(cap)")
        // The newest data are still there; what went first was old raw detail.
        let latest = try store.history(MonitoredPort(proto: .tcp, port: 9000), since: start + 1400, until: start + 1500, step: nil)
        #expect(!latest.samples.isEmpty)
        #expect(try DatabaseQueue(path: store.path).read { db in try String.fetchOne(db, sql: "PRAGMA integrity_check") } == "ok")
    }

    @Test func newFilesUseIncrementalAutoVacuumAndWAL() throws {
        let dir = try tempDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let store = try HistoryStore(path: dir + "/h.sqlite")
        try store.write(samples: [sample(1_800_000_000)], events: [])
        let modes = try store.reader.read { db in
            (try Int.fetchOne(db, sql: "PRAGMA auto_vacuum"), try String.fetchOne(db, sql: "PRAGMA journal_mode"))
        }
        #expect(modes.0 == 2)
        #expect(modes.1 == "wal")
    }

    @Test func openReadOnlyRefusesMissingGarbageAndForeignFiles() throws {
        let dir = try tempDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        func message(_ body: () throws -> Void) -> String? {
            do { try body(); return nil } catch let e as PortwatchError { return e.message } catch { return "\(error)" }
        }
        let missing = message { _ = try HistoryStore.openReadOnly(path: dir + "/none.sqlite") }
        #expect(missing?.hasPrefix(dir + "/none.sqlite:") == true)
        #expect(!FileManager.default.fileExists(atPath: dir + "/none.sqlite"))

        let garbage = dir + "/garbage.sqlite"
        try Data((0..<8192).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 3) }).write(to: URL(fileURLWithPath: garbage))
        #expect(message { _ = try HistoryStore.openReadOnly(path: garbage) } == "\(garbage): not an SQLite database")
        #expect(message { _ = try HistoryStore(path: garbage) } == "\(garbage): not an SQLite database")

        let foreign = dir + "/foreign.sqlite"
        try DatabaseQueue(path: foreign).write { db in try db.execute(sql: "CREATE TABLE t (x); INSERT INTO t VALUES (1)") }
        #expect(message { _ = try HistoryStore.openReadOnly(path: foreign) } == "\(foreign): not a portwatch history database")
        #expect(message { _ = try HistoryStore(path: foreign) }?.hasPrefix("\(foreign): not a portwatch history database") == true)
        // Neither attempt touched the foreign file's tables.
        #expect(try DatabaseQueue(path: foreign).read { db in try String.fetchAll(db, sql: "SELECT name FROM sqlite_master") } == ["t"])
    }

    @Test func aReaderSeesWholeBatchesWhileTheWriterWrites() async throws {
        let dir = try tempDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let store = try HistoryStore(path: dir + "/h.sqlite")
        try store.write(samples: [sample(1_799_999_999)], events: [])
        let reader = try HistoryStore.openReadOnly(path: store.path)
        let start = 1_800_000_000.0
        let batches = 300
        let writer = Task.detached {
            for i in 0..<batches {
                try store.write(samples: (0..<10).map { sample(start + Double(i), port: UInt16(7000 + $0), window: 1) }, events: [])
            }
        }
        var reads = 0
        var partial = 0
        while reads < 2000 {
            let a = try reader.history(MonitoredPort(proto: .tcp, port: 7000), since: start, until: start + 1e6, step: nil).samples.count
            let b = try reader.history(MonitoredPort(proto: .tcp, port: 7009), since: start, until: start + 1e6, step: nil).samples.count
            // Port 7009 is written after 7000 in the same transaction, and read after it here.
            if b < a { partial += 1 }
            reads += 1
            if a == batches && b == batches { break }
        }
        try await writer.value
        #expect(partial == 0)
        #expect(try reader.history(MonitoredPort(proto: .tcp, port: 7009), since: start, until: start + 1e6, step: nil).samples.count == batches)
    }
}

/// The `portwatch-bench` binary built beside this test bundle.
private func benchPath() -> String? {
    var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
    let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
    let exe = n > 0 ? String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) : ""
    var dirs = [(exe as NSString).deletingLastPathComponent]
    dirs += CommandLine.arguments.filter { $0.hasSuffix(".xctest") }.map { ($0 as NSString).deletingLastPathComponent }
    return dirs.map { $0 + "/portwatch-bench" }.first { access($0, X_OK) == 0 }
}

/// Runs a tool to completion (mount, umount), returning its exit status.
@discardableResult
private func run(_ tool: String, _ arguments: [String]) throws -> Int32 {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: tool)
    p.arguments = arguments
    p.standardOutput = FileHandle.nullDevice
    p.standardError = FileHandle.nullDevice
    try p.run()
    p.waitUntilExit()
    return p.terminationStatus
}

/// Waits (bounded) until `condition` holds, checking every 10 ms: `seconds` worth of checks,
/// counted rather than timed, so a test process whose other tests hold the cooperative pool's
/// few threads for a while (2 cores here) does not run out of time before the writer got a turn.
private func eventually(seconds: Double, _ condition: () async -> Bool) async -> Bool {
    for _ in 0..<max(1, Int(seconds * 100)) {
        if await condition() { return true }
        try? await Task.sleep(for: .milliseconds(10))
    }
    return await condition()
}

@Suite struct HistoryWriterTests {
    /// The backlog is bounded: past it the oldest batches go (counted), the newest are written.
    @Test func aFullBacklogDropsTheOldestBatchesAndCountsThem() async throws {
        let dir = try tempDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let store = try HistoryStore(path: dir + "/h.sqlite")
        let writer = HistoryWriter(store: store, backlog: 10, maintainEvery: .seconds(3600))
        let start = 1_800_000_000.0
        // Not running yet: like a writer stuck on a slow disk while the sampler goes on.
        for i in 0..<15 { writer.submit(samples: [sample(start + Double(i))]) }
        #expect(writer.droppedBatches == 5)
        let running = Task { try await writer.run() }
        #expect(await eventually(seconds: 20) { writer.writtenBatches == 10 })
        running.cancel()
        try await running.value
        let times = try store.history(MonitoredPort(proto: .tcp, port: 8080), since: start, until: start + 100, step: nil)
            .samples.map(\.time)
        #expect(times == (5..<15).map { start + Double($0) })
        #expect(writer.writeErrors == 0)
    }
}

@Suite struct HistoryCrashTests {
    /// `kill -9` of a writer at moments it reports itself, five times: the file opens, passes
    /// `integrity_check`, holds every batch the writer said was committed, and no half batch.
    @Test func killNineWhileWritingLosesNothingCommitted() throws {
        let bench = try #require(benchPath(), "portwatch-bench is built by `swift build --build-tests`")
        let dir = try tempDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let db = dir + "/history.sqlite"
        let portsPerBatch = 5
        var committed: Set<Int64> = []
        for round in 0..<5 {
            let child = Process()
            child.executableURL = URL(fileURLWithPath: bench)
            // Odd rounds write back to back, so the kill lands inside a transaction more often.
            child.arguments = ["history-write-loop", "--db", db, "--interval", round % 2 == 0 ? "10ms" : "1ms",
                               "--ports", String(portsPerBatch), "--maintain-every", "7", "--max-seconds", "60"]
            let out = Pipe()
            child.standardOutput = out
            child.standardError = FileHandle.nullDevice
            try child.run()
            let killAfter = 5 + round * 9
            var seen = 0
            var pending = ""
            func take(_ data: Data) {
                pending += String(decoding: data, as: UTF8.self)
                while let newline = pending.firstIndex(of: "\n") {
                    let line = pending[..<newline].split(separator: " ")
                    pending = String(pending[pending.index(after: newline)...])
                    if line.count == 3, line[0] == "committed", let t = Int64(line[1]) {
                        committed.insert(t)
                        seen += 1
                    }
                }
            }
            while seen < killAfter {
                let chunk = out.fileHandleForReading.availableData
                if chunk.isEmpty { break }
                take(chunk)
            }
            kill(child.processIdentifier, SIGKILL)
            // Lines printed between our read and the kill were committed too.
            take(out.fileHandleForReading.readDataToEndOfFile())
            child.waitUntilExit()
            #expect(child.terminationReason == .uncaughtSignal, "round \(round): the writer ended before the kill")
            #expect(seen >= killAfter)

            let queue = try DatabaseQueue(path: db)
            let (integrity, perTime) = try queue.read { db in
                (try String.fetchAll(db, sql: "PRAGMA integrity_check"),
                 try Row.fetchAll(db, sql: "SELECT t, COUNT(*) AS n FROM sample_raw GROUP BY t"))
            }
            #expect(integrity == ["ok"], "round \(round)")
            var stored: [Int64: Int] = [:]
            for row in perTime { stored[row["t"]] = row["n"] }
            let missing = committed.filter { stored[$0] != portsPerBatch }
            #expect(missing.isEmpty, "round \(round): \(missing.count) committed batches missing or partial")
            #expect(stored.values.allSatisfy { $0 == portsPerBatch }, "round \(round): a half-written batch")
        }
        // The file still opens for the CLI and for the daemon.
        _ = try HistoryStore.openReadOnly(path: db)
        _ = try HistoryStore(path: db)
    }

    /// A real full disk (an 8 MB tmpfs filled up): writes fail and are counted, the writer keeps
    /// the batches and retries, and everything lands once space is back.
    @Test func writerRetriesOnAFullDiskAndResumes() async throws {
        guard geteuid() == 0 else {
            Issue.record("needs root to mount a tmpfs (CI runs as root)")
            return
        }
        let dir = try tempDirectory()
        let mnt = dir + "/mnt"
        try FileManager.default.createDirectory(atPath: mnt, withIntermediateDirectories: true)
        let mounted = try run("/bin/mount", ["-t", "tmpfs", "-o", "size=8m", "tmpfs", mnt])
        try #require(mounted == 0, "mount -t tmpfs failed")
        defer {
            _ = try? run("/bin/umount", ["-l", mnt])
            try? FileManager.default.removeItem(atPath: dir)
        }
        // A small cap keeps the WAL small too (checkpoints come sooner), so the database fits the tmpfs.
        let store = try HistoryStore(path: mnt + "/history.sqlite", maxSize: 4_000_000)
        let writer = HistoryWriter(store: store, backlog: 1000, retryDelay: .milliseconds(20),
                                   maintainEvery: .seconds(3600))
        let running = Task { try await writer.run() }
        let start = 1_800_000_000.0
        func batch(_ i: Int) -> [PortSample] { (0..<20).map { sample(start + Double(i), port: UInt16(6000 + $0), window: 1) } }

        for i in 0..<5 { writer.submit(samples: batch(i)) }
        #expect(await eventually(seconds: 20) { writer.writtenBatches == 5 })
        try store.checkpoint()

        // Fill the file system to the last block.
        let filler = mnt + "/filler"
        let fd = open(filler, O_WRONLY | O_CREAT | O_CLOEXEC, 0o600)
        try #require(fd >= 0)
        let block = [UInt8](repeating: 0xAB, count: 4096)
        var full = false
        for _ in 0..<10_000 {
            let n = write(fd, block, block.count)
            if n < block.count {
                full = n >= 0 || errno == ENOSPC
                break
            }
        }
        close(fd)
        try #require(full, "the tmpfs did not fill up")

        for i in 5..<25 { writer.submit(samples: batch(i)) }
        #expect(await eventually(seconds: 20) { writer.writeErrors > 0 })
        let writtenWhileFull = writer.writtenBatches
        #expect(writtenWhileFull < 25)

        try FileManager.default.removeItem(atPath: filler)
        #expect(await eventually(seconds: 30) { writer.writtenBatches == 25 })
        #expect(writer.droppedBatches == 0)
        running.cancel()
        try await running.value

        let reader = try HistoryStore.openReadOnly(path: store.path)
        for port: UInt16 in [6000, 6019] {
            let series = try reader.history(MonitoredPort(proto: .tcp, port: port), since: start, until: start + 100, step: nil)
            #expect(series.samples.map(\.time) == (0..<25).map { start + Double($0) })
        }
        let integrity = try await reader.reader.read { db in try String.fetchAll(db, sql: "PRAGMA integrity_check") }
        #expect(integrity == ["ok"])
    }
}

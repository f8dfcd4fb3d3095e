import GRDB
import PortwatchCore

extension HistoryStore {
    /// Rolls raw samples up into 1-minute rows and those into 1-hour rows, deletes what is past
    /// retention, and holds the file under `maxSize`: when over, the oldest rows of the finest
    /// resolution go first (they survive, coarser, in the next table), then free pages are given
    /// back to the file system (incremental vacuum and a WAL checkpoint).
    public func maintain(now: Double) throws {
        let pool = try writable()
        let nowSeconds = Int64(now.rounded(.down))
        do {
            try pool.write { db in
                try maintainProbes(nowSeconds: nowSeconds, db)
                guard let first = try Meta.value("first_s", db) else { return }
                // A minute is rolled up one minute after it ends: a sample written a little late
                // (a slow disk, a backlog) still lands in its minute.
                try rollUp(into: .minute, upTo: (nowSeconds / 60 - 1) * 60, first: first, db)
                let minuteDone = try Meta.value(HistoryLevel.minute.doneKey, db) ?? 0
                try rollUp(into: .hour, upTo: minuteDone / 3600 * 3600, first: first, db)
                try deleteBefore(.raw, seconds: nowSeconds - Self.seconds(retention.raw), db)
                try deleteBefore(.minute, seconds: nowSeconds - Self.seconds(retention.minute), db)
                let oldest = nowSeconds - Self.seconds(retention.hour)
                try deleteBefore(.hour, seconds: oldest, db)
                try deleteLogs(before: oldest, db)
                try db.execute(sql: "DELETE FROM port WHERE last_s < ?", arguments: [oldest])
                // A namespace whose ports and alerts are all gone past retention gives its id back.
                let shift = StoredPortKey.namespaceShift
                try db.execute(sql: """
                    DELETE FROM netns WHERE id NOT IN (SELECT DISTINCT key >> \(shift) FROM port)
                                        AND id NOT IN (SELECT DISTINCT key >> \(shift) FROM alert WHERE key IS NOT NULL)
                    """)
            }
            try enforceSizeCap(pool)
        } catch {
            throw Self.describe(error, path: path)
        }
    }

    /// Bytes the database holds in live pages (free pages excluded) plus what its WAL may hold.
    public func storedBytes() throws -> UInt64 {
        try read { db in UInt64(max(0, try Self.usedBytes(db))) + UInt64(Self.walLimit(maxSize: maxSize)) }
    }

    static func seconds(_ d: Duration) -> Int64 {
        d.components.seconds
    }

    /// One INSERT ... SELECT per roll-up: rows of the finer table in [done, upTo) summed per step.
    private func rollUp(into target: HistoryLevel, upTo: Int64, first: Int64, _ db: Database) throws {
        guard let source = target.finer else { return }
        let from = try Meta.value(target.doneKey, db) ?? (first / target.seconds * target.seconds)
        guard upTo > from else { return }
        let unit = source.millisPerUnit
        let divisor = target.seconds * 1000 / unit
        let columns = HistorySchema.valueColumns
        let sums = columns.map(HistorySchema.aggregate).joined(separator: ", ")
        try db.execute(sql: """
            INSERT OR REPLACE INTO \(target.table) (key, t, \(columns.joined(separator: ", ")))
            SELECT key, (t / \(divisor)) * \(target.seconds), \(sums) FROM \(source.table)
            WHERE key IN (SELECT key FROM port) AND t >= ? AND t < ?
            GROUP BY key, t / \(divisor)
            """, arguments: [from * 1000 / unit, upTo * 1000 / unit])
        try Meta.set(target.doneKey, to: upTo, db)
    }

    /// Deletes a level's rows older than `seconds` and remembers that the level starts there.
    private func deleteBefore(_ level: HistoryLevel, seconds: Int64, _ db: Database) throws {
        let bound = seconds * 1000 / level.millisPerUnit
        try db.execute(sql: "DELETE FROM \(level.table) WHERE key IN (SELECT key FROM port) AND t < ?",
                       arguments: [bound])
        try Meta.raise(level.cutKey, to: seconds, db)
    }

    private func deleteLogs(before seconds: Int64, _ db: Database) throws {
        try db.execute(sql: "DELETE FROM event WHERE t < ?", arguments: [seconds * 1000])
        try db.execute(sql: "DELETE FROM alert WHERE t < ?", arguments: [seconds * 1000])
    }

    static func usedBytes(_ db: Database) throws -> Int64 {
        let pageSize = try Int64.fetchOne(db, sql: "PRAGMA page_size") ?? 4096
        let pages = try Int64.fetchOne(db, sql: "PRAGMA page_count") ?? 0
        let free = try Int64.fetchOne(db, sql: "PRAGMA freelist_count") ?? 0
        return (pages - free) * pageSize
    }

    private func enforceSizeCap(_ pool: DatabasePool) throws {
        let budget = Int64(clamping: maxSize) - Self.walLimit(maxSize: maxSize)
        try pool.writeWithoutTransaction { db in
            var dropped = false
            // Bounded: each round deletes a quarter of some level's droppable span.
            for _ in 0..<200 {
                guard try Self.usedBytes(db) > budget else { break }
                var progressed = false
                try db.inTransaction {
                    progressed = try dropOldest(db)
                    return progressed ? .commit : .rollback
                }
                guard progressed else { break }
                dropped = true
            }
            let pages = try Int64.fetchOne(db, sql: "PRAGMA page_count") ?? 0
            let free = try Int64.fetchOne(db, sql: "PRAGMA freelist_count") ?? 0
            // Free pages are reused by the next inserts; give them back only when the cap needs
            // it or when many are idle (after retention removed a burst of history).
            if dropped || (free > 0 && free * 8 > pages) {
                try db.execute(sql: "PRAGMA incremental_vacuum")
                // The file shrinks at checkpoint; a reader in the middle of a read may hold it
                // back until the next round, which is fine.
                _ = try? db.checkpoint(.truncate)
            }
        }
    }

    /// Deletes the oldest quarter of the finest level whose old rows also exist coarser (raw
    /// rows already rolled up, then minute rows already rolled up), then of hour rows and the
    /// logs. False when nothing is left to drop.
    private func dropOldest(_ db: Database) throws -> Bool {
        let marks = try LevelMarks(db)
        guard let first = marks.firstSeconds else { return false }
        let last = (try Meta.value("last_ms", db) ?? 0) / 1000
        for level in HistoryLevel.allCases {
            let keepFrom: Int64 = switch level {
            case .raw: marks.done[.minute] ?? first
            case .minute: marks.done[.hour] ?? first
            case .hour: last / 3600 * 3600
            }
            let horizon = marks.horizon(level, first: first)
            guard keepFrom > horizon else { continue }
            let chunk = max((keepFrom - horizon) / 4, max(level.seconds, 60))
            let cut = min(horizon + chunk, keepFrom)
            try deleteBefore(level, seconds: cut, db)
            if level == .hour { try deleteLogs(before: cut, db) }
            return true
        }
        return false
    }
}

extension HistoryStore {
    /// Rows per table (`raw`, `minute`, `hour`, `events`, `alerts`): benchmark and test figures.
    public func rowCounts() throws -> [(String, Int)] {
        try read { db in
            var counts: [(String, Int)] = []
            for (name, table) in [("raw", HistoryLevel.raw.table), ("minute", HistoryLevel.minute.table),
                                  ("hour", HistoryLevel.hour.table), ("events", "event"), ("alerts", "alert")] {
                counts.append((name, try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM \(table)") ?? 0))
            }
            return counts
        }
    }
}

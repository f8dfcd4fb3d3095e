import GRDB
import PortwatchCore

extension HistoryStore {
    /// Stored samples of `port` between `since` and `until` (epoch seconds), in its network
    /// namespace (`port.namespace`, a label as the daemon tags rows; nil: the daemon's own). A
    /// namespace the history never stored is a usage error.
    ///
    /// Without `step`: the finest resolution that covers the span (raw samples within raw
    /// retention, then 1-minute, then 1-hour rows). With `step` (seconds, at least 1): rows of the
    /// coarsest stored resolution not coarser than the step, aggregated on the fly into steps
    /// (see `HistorySeries` for what a rolled-up sample means). The newest part that has not been
    /// rolled up yet comes from the finer tables, so a series reaches the latest sample.
    public func history(_ port: MonitoredPort, since: Double, until: Double = .infinity, step: Double?) throws -> HistorySeries {
        var series = try read { db in
            try Self.series(port, key: StoredPortKey.pack(port.proto, port.port, namespace: NamespaceKeys.existing(port.namespace, db)),
                            since: since, until: until, step: step, db)
        }
        if let namespace = port.namespace {
            series.namespace = namespace
            for i in series.samples.indices { series.samples[i].namespace = namespace }
        }
        return series
    }

    /// Throws the usage error `history` would for a namespace (a daemon label) the history never
    /// stored; nil (the daemon's own) always passes.
    public func requireNamespace(_ label: String?) throws {
        _ = try read { db in try NamespaceKeys.existing(label, db) }
    }

    private static func series(_ port: MonitoredPort, key: Int64, since: Double, until: Double, step: Double?,
                               _ db: Database) throws -> HistorySeries {
        let marks = try LevelMarks(db)
        let sinceMs = Self.millis(since)
        let untilMs = until.isFinite ? Self.millis(until) : Int64.max - 1
        guard let first = marks.firstSeconds, untilMs >= sinceMs else {
            return HistorySeries(proto: port.proto, port: port.port, stepSeconds: step ?? 0, samples: [])
        }
        if let step {
            let seconds = max(1, Int64(step.rounded()))
            let level = HistoryLevel.allCases.last { $0.seconds <= seconds } ?? .raw
            let rows = try Self.aggregate(key: key, from: level, stepSeconds: seconds, sinceMs: sinceMs,
                                          untilMs: untilMs, marks: marks, db)
            return HistorySeries(proto: port.proto, port: port.port, stepSeconds: Double(seconds),
                                 samples: rows.map { $0.sample(time: Double($0.t)) })
        }
        let oldestHorizon = HistoryLevel.allCases.map { marks.horizon($0, first: first) }.min() ?? first
        let wanted = max(sinceMs / 1000, oldestHorizon)
        let level = HistoryLevel.allCases.first { marks.horizon($0, first: first) <= wanted } ?? .hour
        if level == .raw {
            return try Self.rawSeries(port, key: key, sinceMs: sinceMs, untilMs: untilMs, db)
        }
        let rows = try Self.aggregate(key: key, from: level, stepSeconds: level.seconds, sinceMs: sinceMs,
                                      untilMs: untilMs, marks: marks, db)
        return HistorySeries(proto: port.proto, port: port.port, stepSeconds: Double(level.seconds),
                             samples: rows.map { $0.sample(time: Double($0.t)) })
    }

    static func millis(_ seconds: Double) -> Int64 {
        guard seconds.isFinite else { return seconds < 0 ? 0 : Int64.max - 1 }
        return Int64(max(0, min(seconds * 1000, 9e15)).rounded(.down))
    }

    /// Raw samples as written, with their owners.
    private static func rawSeries(_ port: MonitoredPort, key: Int64, sinceMs: Int64, untilMs: Int64,
                                  _ db: Database) throws -> HistorySeries {
        let rows = try SampleRow.fetchAll(db, sql: """
            SELECT \(HistorySchema.rawColumns) FROM \(HistoryLevel.raw.table) WHERE key = ? AND t >= ? AND t <= ? ORDER BY t
            """, arguments: [key, sinceMs, untilMs])
        var labels: [Int64: (names: [String], executables: [String])] = [:]
        let ids = Set(rows.compactMap(\.owners))
        if !ids.isEmpty {
            let list = ids.map(String.init).joined(separator: ",")
            for row in try Row.fetchAll(db, sql: "SELECT id, text FROM label WHERE id IN (\(list))") {
                let id: Int64 = row["id"]
                let text: String = row["text"]
                labels[id] = OwnerLabel.decode(text)
            }
        }
        let samples = rows.map { row in row.sample(time: Double(row.t) / 1000, owners: row.owners.flatMap { labels[$0] }) }
        let windows = samples.map(\.windowSeconds).filter { $0 > 0 }.sorted()
        let step = windows.isEmpty ? 0 : windows[windows.count / 2]
        return HistorySeries(proto: port.proto, port: port.port, stepSeconds: step, samples: samples)
    }

    /// Steps of `stepSeconds` from `level` where it has been rolled up to, and from finer levels
    /// after that; partial steps at the seams are added together.
    static func aggregate(key: Int64, from level: HistoryLevel, stepSeconds: Int64, sinceMs: Int64, untilMs: Int64,
                          marks: LevelMarks, _ db: Database) throws -> [SampleRow] {
        var buckets: [Int64: SampleRow] = [:]
        var start = sinceMs
        var current: HistoryLevel? = level
        while let lvl = current, start <= untilMs {
            let end = min(untilMs + 1, marks.doneMs(lvl))
            if end > start {
                for row in try aggregateRows(key: key, level: lvl, stepSeconds: stepSeconds, fromMs: start, toMs: end, db) {
                    if buckets[row.t] == nil { buckets[row.t] = row } else { buckets[row.t]!.add(row) }
                }
                start = end
            }
            current = lvl.finer
        }
        return buckets.values.sorted { $0.t < $1.t }
    }

    /// Rows of one table in [fromMs, toMs) summed per step; `t` of each result is the step's start in seconds.
    private static func aggregateRows(key: Int64, level: HistoryLevel, stepSeconds: Int64, fromMs: Int64, toMs: Int64,
                                      _ db: Database) throws -> [SampleRow] {
        let unit = level.millisPerUnit
        let divisor = stepSeconds * 1000 / unit
        let sums = HistorySchema.valueColumns.map { "\(HistorySchema.aggregate($0)) AS \($0)" }.joined(separator: ", ")
        // Rows that start inside the range (roll-up rows start on step boundaries).
        let lower = (fromMs + unit - 1) / unit
        let upper = toMs == Int64.max ? Int64.max : (toMs + unit - 1) / unit
        return try SampleRow.fetchAll(db, sql: """
            SELECT key, (t / \(divisor)) * \(stepSeconds) AS t, \(sums) FROM \(level.table)
            WHERE key = ? AND t >= ? AND t < ? GROUP BY t / \(divisor) ORDER BY 2
            """, arguments: [key, lower, upper])
    }
}

/// Where each level's data starts and how far roll-ups have reached, read from `meta`.
struct LevelMarks {
    var firstSeconds: Int64?
    var cut: [HistoryLevel: Int64] = [:]
    var done: [HistoryLevel: Int64] = [:]

    init(_ db: Database) throws {
        firstSeconds = try Meta.value("first_s", db)
        for level in HistoryLevel.allCases {
            cut[level] = try Meta.value(level.cutKey, db)
            done[level] = try Meta.value(level.doneKey, db)
        }
    }

    /// Seconds from which the level is complete: its first sample, or where deletion stopped.
    func horizon(_ level: HistoryLevel, first: Int64) -> Int64 {
        max(first, cut[level] ?? first)
    }

    /// Milliseconds up to which rows have been rolled up into `level` (raw: everything).
    func doneMs(_ level: HistoryLevel) -> Int64 {
        if level == .raw { return Int64.max }
        return (done[level] ?? 0) * 1000
    }
}

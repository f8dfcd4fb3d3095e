import GRDB
import PortwatchCore

extension HistoryStore {
    /// Stores probe results (one transaction).
    public func recordProbes(_ results: [ProbeResult]) throws {
        guard !results.isEmpty else { return }
        let pool = try writable()
        do {
            try pool.write { db in
                let insert = try db.cachedStatement(sql: """
                    INSERT OR REPLACE INTO \(ProbeSchema.raw)
                    (target, t, healthy, state, latency_min, latency_median, latency_max, loss, days_left)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """)
                for r in results {
                    let values: [(any DatabaseValueConvertible)?] = [
                        r.target.text, Int64((r.time.timeIntervalSince1970 * 1000).rounded()), r.healthy ? 1 : 0,
                        r.state.rawValue, r.latency?.min, r.latency?.median, r.latency?.max, r.loss,
                        r.tls.map { Int64($0.daysLeft) },
                    ]
                    try insert.execute(arguments: StatementArguments(values))
                }
            }
        } catch {
            throw Self.describe(error, path: path)
        }
    }

    /// Stored results of a target since `since` (epoch seconds), oldest first: raw results when
    /// raw retention covers the span, else hourly roll-ups followed by the raw results of the
    /// hours not rolled up yet.
    public func probeHistory(target: String, since: Double, now: Double) throws -> ProbeHistory {
        try read { db in
            let sinceMs = Int64((since * 1000).rounded(.down))
            let rawCut = now - Double(Self.seconds(retention.raw))
            if since >= rawCut {
                return ProbeHistory(target: target, stepSeconds: 0, points: try rawPoints(db, target, fromMs: sinceMs))
            }
            let done = try Meta.value(ProbeSchema.hourDone, db) ?? 0
            var points = try Row.fetchAll(db, sql: """
                SELECT t, n, healthy, latency_min, latency_sum, latency_n, latency_max, loss_sum, days_left
                FROM \(ProbeSchema.hour) WHERE target = ? AND t >= ? ORDER BY t
                """, arguments: [target, Int64(since.rounded(.down)) / 3600 * 3600]).map { row -> ProbePoint in
                let n: Int64 = row[1]
                let healthy: Int64 = row[2]
                let latencyN: Int64 = row[5]
                let sum: Double? = row[4]
                let lossSum: Double = row[7]
                let days: Int64? = row[8]
                return ProbePoint(time: Double(row[0] as Int64), probes: Int(n), healthy: n > 0 ? Double(healthy) / Double(n) : 0,
                                  state: nil, latencyMin: row[3],
                                  latencyMedian: latencyN > 0 ? sum.map { $0 / Double(latencyN) } : nil,
                                  latencyMax: row[6], loss: n > 0 ? lossSum / Double(n) : 0, daysLeft: days.map(Int.init))
            }
            points += try rawPoints(db, target, fromMs: max(sinceMs, done * 1000))
            return ProbeHistory(target: target, stepSeconds: 3600, points: points)
        }
    }

    private func rawPoints(_ db: Database, _ target: String, fromMs: Int64) throws -> [ProbePoint] {
        try Row.fetchAll(db, sql: """
            SELECT t, healthy, state, latency_min, latency_median, latency_max, loss, days_left
            FROM \(ProbeSchema.raw) WHERE target = ? AND t >= ? ORDER BY t
            """, arguments: [target, fromMs]).map { row in
            let days: Int64? = row[7]
            return ProbePoint(time: Double(row[0] as Int64) / 1000, probes: 1, healthy: (row[1] as Int64) == 1 ? 1 : 0,
                              state: row[2], latencyMin: row[3], latencyMedian: row[4], latencyMax: row[5],
                              loss: row[6], daysLeft: days.map(Int.init))
        }
    }

    /// Rolls complete hours of raw probe results up and deletes what is past retention (raw rows
    /// after raw retention, hourly rows after hour retention), inside `maintain`'s transaction.
    func maintainProbes(nowSeconds: Int64, _ db: Database) throws {
        let upTo = nowSeconds / 3600 * 3600
        var from = try Meta.value(ProbeSchema.hourDone, db)
        if from == nil, let first = try Int64.fetchOne(db, sql: "SELECT MIN(t) FROM \(ProbeSchema.raw)") {
            from = first / 1000 / 3600 * 3600
        }
        if let from, upTo > from {
            try db.execute(sql: """
                INSERT OR REPLACE INTO \(ProbeSchema.hour)
                (target, t, n, healthy, latency_min, latency_sum, latency_n, latency_max, loss_sum, days_left)
                SELECT target, (t / 3600000) * 3600, COUNT(*), SUM(healthy), MIN(latency_min), SUM(latency_median),
                       COUNT(latency_median), MAX(latency_max), SUM(loss), MIN(days_left)
                FROM \(ProbeSchema.raw) WHERE t >= ? AND t < ? GROUP BY target, t / 3600000
                """, arguments: [from * 1000, upTo * 1000])
            try Meta.set(ProbeSchema.hourDone, to: upTo, db)
        }
        try db.execute(sql: "DELETE FROM \(ProbeSchema.raw) WHERE t < ?",
                       arguments: [(nowSeconds - Self.seconds(retention.raw)) * 1000])
        try db.execute(sql: "DELETE FROM \(ProbeSchema.hour) WHERE t < ?",
                       arguments: [nowSeconds - Self.seconds(retention.hour)])
    }
}

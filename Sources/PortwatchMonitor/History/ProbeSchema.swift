import GRDB

/// Probe results: one raw row per probe (`t` in milliseconds), rolled up per hour (`t` in seconds,
/// the hour's start) the way port samples are, and kept as long as raw and hourly samples are.
enum ProbeSchema {
    static let raw = "probe_raw"
    static let hour = "probe_hour"
    /// `meta` name: hours before this (epoch seconds) are rolled up.
    static let hourDone = "probe_hour_done"

    static func create(_ db: Database) throws {
        // Alerts of probe rules name their target instead of a port.
        try db.execute(sql: "ALTER TABLE alert ADD COLUMN target TEXT")
        try db.execute(sql: """
            CREATE TABLE \(raw) (target TEXT NOT NULL, t INTEGER NOT NULL, healthy INTEGER NOT NULL,
                                 state TEXT NOT NULL, latency_min REAL, latency_median REAL, latency_max REAL,
                                 loss REAL NOT NULL, days_left INTEGER, PRIMARY KEY (target, t)) WITHOUT ROWID
            """)
        // Sums and counts, so a mean over any span of hours is exact.
        try db.execute(sql: """
            CREATE TABLE \(hour) (target TEXT NOT NULL, t INTEGER NOT NULL, n INTEGER NOT NULL,
                                  healthy INTEGER NOT NULL, latency_min REAL, latency_sum REAL,
                                  latency_n INTEGER NOT NULL, latency_max REAL, loss_sum REAL NOT NULL,
                                  days_left INTEGER, PRIMARY KEY (target, t)) WITHOUT ROWID
            """)
    }
}

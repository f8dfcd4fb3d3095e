import GRDB
import PortwatchCore

/// The stored resolutions of port history, finest first.
///
/// Every resolution has one table with the same columns, so one aggregation reads any of them:
/// `n` is how many raw samples a row stands for, state columns (connections, accept queue,
/// listening) are sums over those samples, window columns (bytes, packets, errors) are sums.
enum HistoryLevel: Int, CaseIterable, Comparable, Sendable {
    case raw, minute, hour

    static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }

    var table: String {
        switch self {
        case .raw: "sample_raw"
        case .minute: "sample_minute"
        case .hour: "sample_hour"
        }
    }

    /// Seconds one row covers (raw: whatever the sampling interval was).
    var seconds: Int64 {
        switch self {
        case .raw: 0
        case .minute: 60
        case .hour: 3600
        }
    }

    /// `t` is milliseconds in raw rows (samples fall anywhere in a second) and whole seconds in
    /// roll-ups (they start on a step boundary); this turns `t` into milliseconds.
    var millisPerUnit: Int64 { self == .raw ? 1 : 1000 }

    var coarser: HistoryLevel? { HistoryLevel(rawValue: rawValue + 1) }
    var finer: HistoryLevel? { HistoryLevel(rawValue: rawValue - 1) }

    /// `meta` names: where roll-ups into this level have reached, and before which time its
    /// rows were deleted (retention or size cap).
    var doneKey: String { "\(table)_done" }
    var cutKey: String { "\(table)_cut" }
}

/// (namespace, protocol, port) in one integer: the port in the low 16 bits, 1 << 16 for UDP, and
/// from bit 17 up the id of the network namespace in the `netns` table, 0 for the daemon's own.
/// The daemon's own keys are exactly the keys written before namespaces were stored, so migration
/// `v3-netns` changed no row; they stay below 131072, which SQLite stores in three bytes.
enum StoredPortKey {
    static let namespaceShift: Int64 = 17

    static func pack(_ proto: TransportProtocol, _ port: UInt16, namespace id: Int64 = 0) -> Int64 {
        id << namespaceShift | (proto == .udp ? 1 << 16 : 0) | Int64(port)
    }

    /// The port of a key (its namespace left out: see `namespaceID`).
    static func unpack(_ key: Int64) -> MonitoredPort? {
        guard key >= 0 else { return nil }
        return MonitoredPort(proto: (key >> 16) & 1 == 1 ? .udp : .tcp, port: UInt16(truncatingIfNeeded: key))
    }

    /// The `netns` id of a key (0: the daemon's own namespace).
    static func namespaceID(_ key: Int64) -> Int64 { key >> namespaceShift }
}

enum HistorySchema {
    /// Columns shared by the three sample tables, after `key` and `t`.
    static let valueColumns = [
        "n", "listening", "established", "syn_recv", "syn_sent", "time_wait", "close_wait", "fin_wait", "other",
        "accept_queue", "accept_queue_max", "window_ms", "rx_bytes", "tx_bytes", "rx_packets", "tx_packets",
        "opened", "closed", "listen_drops", "drops", "retransmits", "connect_timeouts", "connect_refused",
    ]

    /// The raw table's columns in `SampleRow(row:)` order.
    static var rawColumns: String { (["key", "t"] + valueColumns + ["owners"]).joined(separator: ", ") }

    /// How a roll-up combines each value column: maxima stay maxima, everything else adds up.
    static func aggregate(_ column: String) -> String {
        column == "accept_queue_max" ? "MAX(\(column))" : "SUM(\(column))"
    }

    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            for level in HistoryLevel.allCases {
                // Integer columns only; a row per port per step; clustered by (port, time) so a
                // port's history is one range read and retention deletes one range per port.
                var columns = ["key INTEGER NOT NULL", "t INTEGER NOT NULL"]
                columns += valueColumns.map { name in
                    name == "accept_queue" ? "\(name) INTEGER" : "\(name) INTEGER NOT NULL DEFAULT 0"
                }
                if level == .raw { columns.append("owners INTEGER") }
                try db.execute(sql: """
                    CREATE TABLE \(level.table) (\(columns.joined(separator: ", ")), PRIMARY KEY (key, t)) WITHOUT ROWID
                    """)
            }
            // Every port ever written: drives per-port range statements and `everListened`.
            try db.execute(sql: """
                CREATE TABLE port (key INTEGER PRIMARY KEY, first_s INTEGER NOT NULL, last_s INTEGER NOT NULL,
                                   listened_s INTEGER)
                """)
            // Owner lists repeat sample after sample: stored once, referenced by id.
            try db.execute(sql: "CREATE TABLE label (id INTEGER PRIMARY KEY, text TEXT NOT NULL UNIQUE)")
            try db.execute(sql: """
                CREATE TABLE event (id INTEGER PRIMARY KEY, t INTEGER NOT NULL, kind TEXT NOT NULL, key INTEGER,
                                    message TEXT NOT NULL, details TEXT)
                """)
            try db.execute(sql: "CREATE INDEX event_t ON event (t)")
            try db.execute(sql: """
                CREATE TABLE alert (id INTEGER PRIMARY KEY, t INTEGER NOT NULL, rule TEXT NOT NULL, state TEXT NOT NULL,
                                    severity TEXT NOT NULL, key INTEGER, metric TEXT NOT NULL, value REAL NOT NULL,
                                    threshold REAL, message TEXT NOT NULL, instance TEXT NOT NULL)
                """)
            try db.execute(sql: "CREATE INDEX alert_t ON alert (t)")
            try db.execute(sql: "CREATE TABLE meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID")
        }
        migrator.registerMigration("v2-probes", migrate: ProbeSchema.create)
        // Other network namespaces' samples: their ids go into the sample keys (`StoredPortKey`);
        // rows written before are the daemon's own, id 0, so no row is rewritten.
        migrator.registerMigration("v3-netns") { db in
            try db.execute(sql: "CREATE TABLE netns (id INTEGER PRIMARY KEY CHECK (id > 0), label TEXT NOT NULL UNIQUE)")
        }
        return migrator
    }

    /// Migration identifiers a database must have applied for this code to read it.
    static let requiredMigrations: Set<String> = ["v1"]
}

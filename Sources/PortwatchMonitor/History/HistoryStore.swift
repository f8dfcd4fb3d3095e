import Foundation
import GRDB
import PortwatchCore

/// The daemon's history: samples per port, of its own network namespace and of the others it
/// watches (each apart: see `StoredPortKey`), at three resolutions (raw, 1 min, 1 h), the event log
/// and the alert log, in one SQLite file (WAL, so readers never wait for the writer and a
/// `kill -9` loses at most the transaction being written).
///
/// The daemon opens it with `init(path:retention:maxSize:)`; `portwatch history` and
/// `portwatch events` open the same file with `openReadOnly(path:)` while the daemon writes.
public final class HistoryStore: Sendable {
    /// The database file.
    public let path: String
    /// How long each resolution is kept (used by `maintain`).
    public let retention: Retention
    /// Size cap of the file (database and its WAL) in bytes (used by `maintain`).
    public let maxSize: UInt64

    /// nil when opened read-only.
    let pool: DatabasePool?
    let reader: any DatabaseReader

    /// Opens (creating directories, file and schema as needed) the database for writing.
    public init(path: String, retention: Retention = Retention(), maxSize: UInt64 = 500_000_000) throws {
        self.path = path
        self.retention = retention
        self.maxSize = maxSize
        let directory = (path as NSString).deletingLastPathComponent
        if !directory.isEmpty {
            do {
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            } catch {
                throw PortwatchError.system("\(directory): cannot create the history directory (\(Self.reason(error)))")
            }
        }
        var config = Configuration()
        config.label = "portwatch.history"
        config.busyMode = .timeout(5)
        config.maximumReaderCount = 4
        let walLimit = Self.walLimit(maxSize: maxSize)
        config.prepareDatabase { db in
            guard !db.configuration.readonly else { return }
            // Takes effect only on a new, empty file; the size cap depends on it.
            try db.execute(sql: "PRAGMA auto_vacuum = INCREMENTAL")
            // After each checkpoint the WAL shrinks back to this, so it counts little against the cap.
            try db.execute(sql: "PRAGMA journal_size_limit = \(walLimit)")
            try db.execute(sql: "PRAGMA wal_autocheckpoint = \(max(16, walLimit / 4096))")
        }
        do {
            let pool = try DatabasePool(path: path, configuration: config)
            try pool.read { db in try Self.refuseForeign(db, path: path) }
            try HistorySchema.migrator.migrate(pool)
            self.pool = pool
            self.reader = pool
        } catch {
            throw Self.describe(error, path: path)
        }
    }

    private init(readOnly reader: any DatabaseReader, path: String) {
        self.path = path
        self.reader = reader
        self.pool = nil
        self.retention = Retention()
        self.maxSize = 0
    }

    /// Opens an existing history database for reading only: never creates, migrates or writes it.
    /// A missing file, garbage, a corrupt file or another program's SQLite file throws a
    /// `PortwatchError` whose message names the file.
    public static func openReadOnly(path: String) throws -> HistoryStore {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw PortwatchError.system("\(path): no history database there (is `portwatch daemon` writing elsewhere? see --db)")
        }
        if isDirectory.boolValue { throw PortwatchError.system("\(path): is a directory, not a history database") }
        var config = Configuration()
        config.label = "portwatch.history.readonly"
        config.readonly = true
        config.busyMode = .timeout(5)
        do {
            let queue = try DatabaseQueue(path: path, configuration: config)
            try queue.read { db in
                let applied = try HistorySchema.migrator.appliedIdentifiers(db)
                guard HistorySchema.requiredMigrations.isSubset(of: applied) else {
                    throw PortwatchError.system("\(path): not a portwatch history database")
                }
                // Reads every table header once, so a damaged schema fails here and not mid-output.
                for level in HistoryLevel.allCases { _ = try Int.fetchOne(db, sql: "SELECT 1 FROM \(level.table) LIMIT 1") }
            }
            return HistoryStore(readOnly: queue, path: path)
        } catch {
            throw describe(error, path: path)
        }
    }

    // MARK: - Writing

    /// Stores one sample's rows and the events that came with it, in one transaction: after a
    /// crash either all of them are there or none.
    public func write(samples: [PortSample], events: [MonitorEvent]) throws {
        let pool = try writable()
        do {
            try pool.write { db in
                if !samples.isEmpty { try Self.insert(samples, db) }
                for event in events {
                    var row = EventRow(event)
                    try row.insert(db)
                }
            }
        } catch {
            throw Self.describe(error, path: path)
        }
    }

    /// Appends alert state changes to the alert log.
    public func recordAlerts(_ alerts: [Alert]) throws {
        guard !alerts.isEmpty else { return }
        let pool = try writable()
        do {
            try pool.write { db in
                for alert in alerts {
                    var row = AlertRow(alert)
                    // Another namespace's alert keeps its namespace in the key, as its samples do.
                    if let label = alert.namespace, let port = alert.port {
                        row.key = StoredPortKey.pack(alert.proto ?? .tcp, port, namespace: try NamespaceKeys.id(of: label, db))
                    }
                    try row.insert(db)
                }
            }
        } catch {
            throw Self.describe(error, path: path)
        }
    }

    /// Writes the WAL into the database file and truncates it (clean shutdown; tests).
    public func checkpoint() throws {
        let pool = try writable()
        do {
            try pool.writeWithoutTransaction { db in _ = try db.checkpoint(.truncate) }
        } catch {
            throw Self.describe(error, path: path)
        }
    }

    private static func insert(_ samples: [PortSample], _ db: Database) throws {
        // Hand-written statements: this runs every interval for every port, and Codable encoding
        // of 25 columns per row would cost more than SQLite does.
        let columns = ["key", "t"] + HistorySchema.valueColumns + ["owners"]
        let insert = try db.cachedStatement(sql: """
            INSERT OR REPLACE INTO \(HistoryLevel.raw.table) (\(columns.joined(separator: ", ")))
            VALUES (\(Array(repeating: "?", count: columns.count).joined(separator: ", ")))
            """)
        let port = try db.cachedStatement(sql: """
            INSERT INTO port (key, first_s, last_s, listened_s) VALUES (?, ?, ?, ?)
            ON CONFLICT (key) DO UPDATE SET last_s = max(last_s, excluded.last_s),
                                            listened_s = coalesce(listened_s, excluded.listened_s)
            """)
        var firstMs = Int64.max
        var lastMs = Int64.min
        // Other network namespaces' rows share (protocol, port) with ours: their namespace's id
        // keeps their keys apart.
        var namespaces: [String: Int64] = [:]
        for sample in samples {
            var owners: Int64? = nil
            if !sample.owners.isEmpty || !sample.executables.isEmpty {
                owners = try labelID(OwnerLabel.encode(sample.owners, sample.executables), db)
            }
            var namespace: Int64 = 0
            if let label = sample.namespace {
                if let known = namespaces[label] {
                    namespace = known
                } else {
                    namespace = try NamespaceKeys.id(of: label, db)
                    namespaces[label] = namespace
                }
            }
            let r = SampleRow(sample, owners: owners, namespace: namespace)
            let values: [(any DatabaseValueConvertible)?] = [
                r.key, r.t, r.n, r.listening, r.established, r.synRecv, r.synSent, r.timeWait, r.closeWait,
                r.finWait, r.other, r.acceptQueue, r.acceptQueueMax, r.windowMs, r.rxBytes, r.txBytes,
                r.rxPackets, r.txPackets, r.opened, r.closed, r.listenDrops, r.drops, r.retransmits,
                r.connectTimeouts, r.connectRefused, r.owners,
            ]
            try insert.execute(arguments: StatementArguments(values))
            let seconds = r.t / 1000
            try port.execute(arguments: [r.key, seconds, seconds, r.listening > 0 ? seconds : nil])
            firstMs = min(firstMs, r.t)
            lastMs = max(lastMs, r.t)
        }
        try Meta.lower("first_s", to: firstMs / 1000, db)
        try Meta.raise("last_ms", to: lastMs, db)
    }

    private static func labelID(_ text: String, _ db: Database) throws -> Int64 {
        if let id = try Int64.fetchOne(db.cachedStatement(sql: "SELECT id FROM label WHERE text = ?"), arguments: [text]) {
            return id
        }
        try db.cachedStatement(sql: "INSERT INTO label (text) VALUES (?)").execute(arguments: [text])
        return db.lastInsertedRowID
    }

    // MARK: - Reading

    /// Events since `since` (epoch seconds), of one port and one network namespace if given:
    /// the newest `limit` of them, oldest first.
    public func events(since: Double, port: UInt16?, netns: NamespaceFilter? = nil, limit: Int) throws -> [MonitorEvent] {
        try read { db in
            var sql = "SELECT * FROM event WHERE t >= ?"
            var arguments: StatementArguments = [Int64((since * 1000).rounded(.down))]
            if let port {
                sql += " AND key IS NOT NULL AND (key & 65535) = ?"
                arguments += [Int64(port)]
            }
            Self.filter(netns, sql: &sql, arguments: &arguments)
            sql = "SELECT * FROM (\(sql) ORDER BY t DESC, id DESC LIMIT ?) ORDER BY t, id"
            arguments += [max(0, limit)]
            return try EventRow.fetchAll(db, sql: sql, arguments: arguments).compactMap(\.event)
        }
    }

    /// Events stored after the one with id `afterID` (0: from the start) and not older than
    /// `since`, oldest first, at most `limit`: what `events --follow` polls for.
    public func events(afterID: Int64, since: Double, port: UInt16?, netns: NamespaceFilter? = nil,
                       limit: Int) throws -> [StoredEvent] {
        try read { db in
            var sql = "SELECT * FROM event WHERE id > ? AND t >= ?"
            var arguments: StatementArguments = [afterID, Int64((since * 1000).rounded(.down))]
            if let port {
                sql += " AND key IS NOT NULL AND (key & 65535) = ?"
                arguments += [Int64(port)]
            }
            Self.filter(netns, sql: &sql, arguments: &arguments)
            sql += " ORDER BY id LIMIT ?"
            arguments += [max(0, limit)]
            return try EventRow.fetchAll(db, sql: sql, arguments: arguments).compactMap { row in
                row.event.map { StoredEvent(id: row.id ?? 0, event: $0) }
            }
        }
    }

    /// Keeps the events of one namespace: an event is another namespace's when its details name
    /// it (`netns`), as every event about another namespace's port or the namespace itself does.
    private static func filter(_ netns: NamespaceFilter?, sql: inout String, arguments: inout StatementArguments) {
        guard let netns else { return }
        let label = "(CASE WHEN json_valid(details) THEN json_extract(details, '$.netns') END)"
        if let name = netns.label {
            sql += " AND \(label) = ?"
            arguments += [name]
        } else {
            sql += " AND \(label) IS NULL"
        }
    }

    /// Alert state changes whose state began at or after `since`, newest `limit`, oldest first.
    public func alerts(since: Double, limit: Int) throws -> [Alert] {
        try read { db in
            let labels = try NamespaceKeys.labels(db)
            return try AlertRow.fetchAll(db, sql: """
                SELECT * FROM (SELECT * FROM alert WHERE t >= ? ORDER BY t DESC, id DESC LIMIT ?) ORDER BY t, id
                """, arguments: [Int64((since * 1000).rounded(.down)), max(0, limit)]).compactMap { row in
                    row.alert(labels: labels)
                }
        }
    }

    /// Every port that listened (or was bound) in any stored sample, other namespaces' with their
    /// label: `new_listener` asks it.
    public func everListened() throws -> Set<MonitoredPort> {
        try read { db in
            let labels = try NamespaceKeys.labels(db)
            return Set(try Int64.fetchAll(db, sql: "SELECT key FROM port WHERE listened_s IS NOT NULL")
                .compactMap { NamespaceKeys.port($0, labels: labels) })
        }
    }

    /// Time of the newest stored sample (epoch seconds), nil when there is none.
    public func latestTime() throws -> Double? {
        try read { db in try Meta.value("last_ms", db).map { Double($0) / 1000 } }
    }

    // MARK: - Plumbing

    func read<T>(_ body: (Database) throws -> T) throws -> T {
        do {
            return try reader.read(body)
        } catch {
            throw Self.describe(error, path: path)
        }
    }

    func writable() throws -> DatabasePool {
        guard let pool else { throw PortwatchError.usage("\(path): opened read-only") }
        return pool
    }

    /// Bytes the WAL may keep after a checkpoint: small against the cap.
    static func walLimit(maxSize: UInt64) -> Int64 {
        Int64(min(max(maxSize / 32, 64 * 1024), 4 * 1024 * 1024))
    }

    /// Refuses to add tables to another program's SQLite file.
    private static func refuseForeign(_ db: Database, path: String) throws {
        let tables = try String.fetchAll(db, sql: "SELECT name FROM sqlite_master WHERE type = 'table'")
        if !tables.isEmpty && !tables.contains("grdb_migrations") {
            throw PortwatchError.system("\(path): not a portwatch history database (it has other tables)")
        }
        if tables.contains("grdb_migrations") {
            let applied = try HistorySchema.migrator.appliedIdentifiers(db)
            if !applied.isEmpty && !HistorySchema.requiredMigrations.isSubset(of: applied) {
                throw PortwatchError.system("\(path): not a portwatch history database")
            }
        }
    }

    /// One line naming the file and what is wrong with it.
    static func describe(_ error: Error, path: String) -> Error {
        if error is PortwatchError { return error }
        guard let e = error as? DatabaseError else { return PortwatchError.system("\(path): \(reason(error))") }
        switch e.resultCode {
        case .SQLITE_NOTADB: return PortwatchError.system("\(path): not an SQLite database")
        case .SQLITE_CORRUPT: return PortwatchError.system("\(path): the database is corrupt")
        case .SQLITE_CANTOPEN: return PortwatchError.system("\(path): cannot open the database")
        case .SQLITE_READONLY: return PortwatchError.system("\(path): the database is read-only")
        case .SQLITE_FULL: return PortwatchError.system("\(path): the disk is full")
        case .SQLITE_PERM, .SQLITE_AUTH: return PortwatchError.permission("\(path): permission denied")
        default: return PortwatchError.system("\(path): \(e.message ?? "\(e.resultCode)")")
        }
    }

    static func reason(_ error: Error) -> String {
        (error as NSError).localizedDescription
    }
}

/// An event with its position in the log (for following the log).
public struct StoredEvent: Sendable, Hashable {
    public var id: Int64
    public var event: MonitorEvent

    public init(id: Int64, event: MonitorEvent) {
        self.id = id
        self.event = event
    }
}

/// Owner names and executables as one `label` text: unit and record separators cannot occur in
/// process names or paths that matter here.
enum OwnerLabel {
    static func encode(_ names: [String], _ executables: [String]) -> String {
        names.joined(separator: "\u{1F}") + "\u{1E}" + executables.joined(separator: "\u{1F}")
    }

    static func decode(_ text: String) -> (names: [String], executables: [String]) {
        let parts = text.split(separator: "\u{1E}", maxSplits: 1, omittingEmptySubsequences: false)
        func list(_ s: Substring?) -> [String] {
            guard let s, !s.isEmpty else { return [] }
            return s.split(separator: "\u{1F}", omittingEmptySubsequences: false).map(String.init)
        }
        return (list(parts.first), list(parts.count > 1 ? parts[1] : nil))
    }
}

/// Integer facts about the store kept in `meta`.
enum Meta {
    static func value(_ name: String, _ db: Database) throws -> Int64? {
        try Int64.fetchOne(db.cachedStatement(sql: "SELECT value FROM meta WHERE name = ?"), arguments: [name])
    }

    static func set(_ name: String, to value: Int64, _ db: Database) throws {
        try db.cachedStatement(sql: "INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)")
            .execute(arguments: [name, value])
    }

    static func raise(_ name: String, to value: Int64, _ db: Database) throws {
        try db.cachedStatement(sql: """
            INSERT INTO meta (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = max(value, excluded.value)
            """).execute(arguments: [name, value])
    }

    static func lower(_ name: String, to value: Int64, _ db: Database) throws {
        try db.cachedStatement(sql: """
            INSERT INTO meta (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = min(value, excluded.value)
            """).execute(arguments: [name, value])
    }
}

extension HistoryStore {
    /// Every port the store has samples of (within retention), ascending: the daemon's own
    /// namespace first, then the others' (with `namespace` set) by label.
    public func ports() throws -> [MonitoredPort] {
        try read { db in
            let labels = try NamespaceKeys.labels(db)
            return try Int64.fetchAll(db, sql: "SELECT key FROM port")
                .compactMap { NamespaceKeys.port($0, labels: labels) }.sorted()
        }
    }
}

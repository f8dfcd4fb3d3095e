import GRDB
import PortwatchCore

/// The `netns` table: the id each other network namespace's label has in the sample keys.
/// Databases written before migration `v3-netns` have no table and only the daemon's own rows,
/// so every read here treats a missing table as "no other namespace".
enum NamespaceKeys {
    /// The id of `label`, added when it is new (the writer).
    static func id(of label: String, _ db: Database) throws -> Int64 {
        if let id = try Int64.fetchOne(db.cachedStatement(sql: "SELECT id FROM netns WHERE label = ?"), arguments: [label]) {
            return id
        }
        try db.cachedStatement(sql: "INSERT INTO netns (label) VALUES (?)").execute(arguments: [label])
        return db.lastInsertedRowID
    }

    /// The id of a namespace label for reading: 0 for nil (the daemon's own); a label the history
    /// never stored is a usage error naming the ones it did.
    static func existing(_ label: String?, _ db: Database) throws -> Int64 {
        guard let label else { return 0 }
        if try db.tableExists("netns"),
           let id = try Int64.fetchOne(db, sql: "SELECT id FROM netns WHERE label = ?", arguments: [label]) {
            return id
        }
        throw HistoryNamespace.unknown(label, stored: Array(try labels(db).values))
    }

    /// Every stored label by id.
    static func labels(_ db: Database) throws -> [Int64: String] {
        guard try db.tableExists("netns") else { return [:] }
        var out: [Int64: String] = [:]
        for row in try Row.fetchAll(db, sql: "SELECT id, label FROM netns") {
            out[row["id"]] = row["label"]
        }
        return out
    }

    /// The monitored port of a stored key, with its namespace's label; nil for a key whose
    /// namespace is not in `labels` (cannot happen in a database this code wrote).
    static func port(_ key: Int64, labels: [Int64: String]) -> MonitoredPort? {
        guard var port = StoredPortKey.unpack(key) else { return nil }
        let id = StoredPortKey.namespaceID(key)
        if id != 0 {
            guard let label = labels[id] else { return nil }
            port.namespace = label
        }
        return port
    }
}

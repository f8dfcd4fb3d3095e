import Foundation
import GRDB
import PortwatchCore

/// One row of a sample table (any resolution), and the running sum of rows while aggregating.
struct SampleRow: FetchableRecord, Sendable, Equatable {
    var key: Int64
    /// Milliseconds in raw rows, seconds in roll-ups (see `HistoryLevel.millisPerUnit`).
    var t: Int64
    var n: Int64 = 1
    var listening: Int64 = 0
    var established: Int64 = 0
    var synRecv: Int64 = 0
    var synSent: Int64 = 0
    var timeWait: Int64 = 0
    var closeWait: Int64 = 0
    var finWait: Int64 = 0
    var other: Int64 = 0
    var acceptQueue: Int64? = nil
    var acceptQueueMax: Int64 = 0
    var windowMs: Int64 = 0
    var rxBytes: Int64 = 0
    var txBytes: Int64 = 0
    var rxPackets: Int64 = 0
    var txPackets: Int64 = 0
    var opened: Int64 = 0
    var closed: Int64 = 0
    var listenDrops: Int64 = 0
    var drops: Int64 = 0
    var retransmits: Int64 = 0
    var connectTimeouts: Int64 = 0
    var connectRefused: Int64 = 0
    /// `label` id of the owners (raw rows only).
    var owners: Int64? = nil

    init(key: Int64, t: Int64) {
        self.key = key
        self.t = t
    }

    /// Decodes by position: every query selects `key`, `t`, then `HistorySchema.valueColumns` in
    /// order (and `owners` for raw rows), which is also the tables' column order. Positions, not
    /// names or Codable: a 7-day query decodes thousands of 25-column rows.
    init(row: Row) {
        key = row[0]
        t = row[1]
        n = row[2]
        listening = row[3]
        established = row[4]
        synRecv = row[5]
        synSent = row[6]
        timeWait = row[7]
        closeWait = row[8]
        finWait = row[9]
        other = row[10]
        acceptQueue = row[11]
        acceptQueueMax = row[12]
        windowMs = row[13]
        rxBytes = row[14]
        txBytes = row[15]
        rxPackets = row[16]
        txPackets = row[17]
        opened = row[18]
        closed = row[19]
        listenDrops = row[20]
        drops = row[21]
        retransmits = row[22]
        connectTimeouts = row[23]
        connectRefused = row[24]
        owners = row.count > 25 ? row[25] : nil
    }

    /// A raw row for one sample; `namespace` is its namespace's `netns` id (0: the daemon's own).
    init(_ s: PortSample, owners: Int64?, namespace: Int64 = 0) {
        key = StoredPortKey.pack(s.proto, s.port, namespace: namespace)
        t = Int64((s.time * 1000).rounded())
        listening = s.listening ? 1 : 0
        established = Int64(s.connections.established)
        synRecv = Int64(s.connections.synRecv)
        synSent = Int64(s.connections.synSent)
        timeWait = Int64(s.connections.timeWait)
        closeWait = Int64(s.connections.closeWait)
        finWait = Int64(s.connections.finWait)
        other = Int64(s.connections.other)
        acceptQueue = s.acceptQueue.map(Int64.init)
        acceptQueueMax = Int64(s.acceptQueueMax ?? 0)
        windowMs = Int64((max(0, s.windowSeconds) * 1000).rounded())
        rxBytes = Int64(clamping: s.bytesReceived)
        txBytes = Int64(clamping: s.bytesSent)
        rxPackets = Int64(clamping: s.packetsReceived)
        txPackets = Int64(clamping: s.packetsSent)
        opened = Int64(s.connectionsOpened)
        closed = Int64(s.connectionsClosed)
        listenDrops = Int64(clamping: s.listenDrops)
        drops = Int64(clamping: s.drops)
        retransmits = Int64(clamping: s.retransmits)
        connectTimeouts = Int64(s.connectTimeouts)
        connectRefused = Int64(s.connectRefused)
        self.owners = owners
    }

    /// Adds another row of the same port (a finer row, or a partial aggregate of the same step).
    mutating func add(_ o: SampleRow) {
        n += o.n
        listening += o.listening
        established += o.established
        synRecv += o.synRecv
        synSent += o.synSent
        timeWait += o.timeWait
        closeWait += o.closeWait
        finWait += o.finWait
        other += o.other
        if let q = o.acceptQueue { acceptQueue = (acceptQueue ?? 0) + q }
        acceptQueueMax = max(acceptQueueMax, o.acceptQueueMax)
        windowMs += o.windowMs
        rxBytes += o.rxBytes
        txBytes += o.txBytes
        rxPackets += o.rxPackets
        txPackets += o.txPackets
        opened += o.opened
        closed += o.closed
        listenDrops += o.listenDrops
        drops += o.drops
        retransmits += o.retransmits
        connectTimeouts += o.connectTimeouts
        connectRefused += o.connectRefused
    }

    /// The sample this row stands for: state columns become the mean over its `n` samples
    /// (rounded), window columns stay sums over `windowMs`, so rates read the same at every step.
    func sample(time: Double, owners: (names: [String], executables: [String])? = nil) -> PortSample {
        let count = max(n, 1)
        func mean(_ sum: Int64) -> Int { Int((Double(sum) / Double(count)).rounded()) }
        var connections = ConnectionCounts()
        connections.established = mean(established)
        connections.synRecv = mean(synRecv)
        connections.synSent = mean(synSent)
        connections.timeWait = mean(timeWait)
        connections.closeWait = mean(closeWait)
        connections.finWait = mean(finWait)
        connections.other = mean(other)
        let port = StoredPortKey.unpack(key) ?? MonitoredPort(proto: .tcp, port: 0)
        return PortSample(
            time: time, proto: port.proto, port: port.port, listening: listening > 0, connections: connections,
            acceptQueue: acceptQueue.map(mean), acceptQueueMax: acceptQueueMax > 0 ? Int(acceptQueueMax) : nil,
            windowSeconds: Double(windowMs) / 1000,
            bytesReceived: UInt64(max(0, rxBytes)), bytesSent: UInt64(max(0, txBytes)),
            packetsReceived: UInt64(max(0, rxPackets)), packetsSent: UInt64(max(0, txPackets)),
            connectionsOpened: Int(opened), connectionsClosed: Int(closed),
            listenDrops: UInt64(max(0, listenDrops)), drops: UInt64(max(0, drops)),
            retransmits: UInt64(max(0, retransmits)), connectTimeouts: Int(connectTimeouts),
            connectRefused: Int(connectRefused), owners: owners?.names ?? [], executables: owners?.executables ?? [])
    }
}

/// One row of the event log.
struct EventRow: Codable, FetchableRecord, MutablePersistableRecord, Sendable {
    static let databaseTableName = "event"

    var id: Int64?
    /// Milliseconds since the epoch.
    var t: Int64
    var kind: String
    var key: Int64?
    var message: String
    /// The event's details as a JSON object, nil when it has none.
    var details: String?

    init(_ e: MonitorEvent) {
        id = nil
        t = Int64((e.time * 1000).rounded())
        kind = e.kind.rawValue
        key = e.port.map { StoredPortKey.pack(e.proto ?? .tcp, $0) }
        message = e.message
        details = e.details.isEmpty ? nil : (try? JSONEncoder().encode(e.details)).map { String(decoding: $0, as: UTF8.self) }
    }

    mutating func didInsert(_ inserted: InsertionSuccess) { id = inserted.rowID }

    /// nil for a kind this build does not know (written by a newer portwatch).
    var event: MonitorEvent? {
        guard let kind = EventKind(rawValue: kind) else { return nil }
        let port = key.flatMap(StoredPortKey.unpack)
        var map: [String: String] = [:]
        if let details, let decoded = try? JSONDecoder().decode([String: String].self, from: Data(details.utf8)) {
            map = decoded
        }
        return MonitorEvent(time: Double(t) / 1000, kind: kind, proto: port?.proto, port: port?.port,
                            message: message, details: map)
    }
}

/// One alert state change, as the alert log keeps it.
struct AlertRow: Codable, FetchableRecord, MutablePersistableRecord, Sendable {
    static let databaseTableName = "alert"

    var id: Int64?
    /// When the alert's state began, milliseconds since the epoch.
    var t: Int64
    var rule: String
    var state: String
    var severity: String
    var key: Int64?
    var metric: String
    var value: Double
    var threshold: Double?
    var message: String
    var instance: String
    /// The probe target of a probe rule's alert (a column since migration v2-probes).
    var target: String?

    init(_ a: Alert) {
        id = nil
        t = Int64((a.since * 1000).rounded())
        rule = a.rule
        state = a.state.rawValue
        severity = a.severity
        key = a.port.map { StoredPortKey.pack(a.proto ?? .tcp, $0) }
        metric = a.metric
        value = a.value.isFinite ? a.value : 0
        threshold = a.threshold.flatMap { $0.isFinite ? $0 : nil }
        message = a.message
        instance = a.instance
        target = a.target
    }

    mutating func didInsert(_ inserted: InsertionSuccess) { id = inserted.rowID }

    /// The stored alert; `labels` (`NamespaceKeys.labels`) name the namespace of another
    /// namespace's alert. nil for a state this build does not know.
    func alert(labels: [Int64: String]) -> Alert? {
        guard let state = AlertState(rawValue: state) else { return nil }
        let port = key.flatMap { NamespaceKeys.port($0, labels: labels) ?? StoredPortKey.unpack($0) }
        return Alert(rule: rule, state: state, severity: severity, proto: port?.proto, port: port?.port,
                     metric: metric, value: value, threshold: threshold, since: Double(t) / 1000,
                     message: message, instance: instance, target: target, namespace: port?.namespace)
    }
}

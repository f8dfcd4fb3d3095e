import PortwatchCore

/// Listener events between consecutive samples: `listener_started`, `listener_stopped`,
/// `owner_changed` and the `new_listener` detector.
///
/// The first sample is the baseline: what listens then raised no `listener_started`. It may still
/// raise `new_listener` when the history says the port never listened before (the port opened
/// while the daemon was down); on a first start there is no history, so the baseline is trusted.
struct ListenerWatch: Sendable {
    /// Ports ever seen listening (history plus this run).
    var everListened: Set<MonitoredPort> = []
    /// No history existed when the daemon started.
    var firstStart = false
    /// Listening ports at the previous sample; nil before the first sample.
    private var listening: Set<MonitoredPort>?
    /// Last known executables of each listening port (kept through samples where they are unknown).
    private var executables: [MonitoredPort: Set<String>] = [:]

    /// `replaced`: labels of namespaces deleted and made again since the previous sample; what
    /// listened in the old one stopped, and what listens in the new one started, even on the
    /// same port.
    mutating func update(_ rows: [MonitoredPort: PortSample], at now: Double, detectors: DetectorConfig,
                         replaced: Set<String> = []) -> [MonitorEvent] {
        var events: [MonitorEvent] = []
        let current = Set(rows.values.filter(\.listening).map(\.key))
        let baseline = listening == nil
        let before = listening ?? current
        let vanished = before.filter { $0.namespace.map(replaced.contains) == true }
        for key in vanished.sorted() {
            events.append(MonitorEvent(time: now, kind: .listenerStopped, proto: key.proto, port: key.port,
                                       message: "\(key) stopped listening (its namespace was made again)",
                                       details: key.namespace.map { ["netns": $0] } ?? [:]))
            executables[key] = nil
        }
        let previous = before.subtracting(vanished)

        for key in current.subtracting(previous).sorted() {
            let row = rows[key]!
            events.append(MonitorEvent(time: now, kind: .listenerStarted, proto: key.proto, port: key.port,
                                       message: "\(key) started listening\(Self.where(row))",
                                       details: Self.details(row)))
        }
        for key in previous.subtracting(current).sorted() {
            events.append(MonitorEvent(time: now, kind: .listenerStopped, proto: key.proto, port: key.port,
                                       message: "\(key) stopped listening",
                                       details: key.namespace.map { ["netns": $0] } ?? [:]))
            executables[key] = nil
        }
        for key in current.sorted() {
            let row = rows[key]!
            let now_ = Set(row.executables)
            guard !now_.isEmpty else { continue }
            if detectors.ownerChanged, previous.contains(key), let before = executables[key], before != now_ {
                var details = Self.details(row)
                details["previous_executables"] = before.sorted().joined(separator: ",")
                events.append(MonitorEvent(time: now, kind: .ownerChanged, proto: key.proto, port: key.port,
                                           message: "\(key) is now held by \(now_.sorted().joined(separator: ", "))"
                                               + " (was \(before.sorted().joined(separator: ", ")))",
                                           details: details))
            }
            executables[key] = now_
        }
        if detectors.newListener {
            let fresh = current.subtracting(everListened)
            if !(baseline && firstStart) {
                for key in fresh.sorted() {
                    let row = rows[key]!
                    events.append(MonitorEvent(time: now, kind: .newListener, proto: key.proto, port: key.port,
                                               message: "\(key) listens for the first time\(Self.where(row))",
                                               details: Self.details(row)))
                }
            }
        }
        everListened.formUnion(current)
        listening = current
        return events
    }

    private static func `where`(_ row: PortSample) -> String {
        var text = row.addresses.isEmpty ? "" : " on \(row.addresses.joined(separator: ", "))"
        if !row.owners.isEmpty { text += " (\(row.owners.joined(separator: ", ")))" }
        return text
    }

    private static func details(_ row: PortSample) -> [String: String] {
        var details: [String: String] = [:]
        if let ns = row.namespace { details["netns"] = ns }
        if !row.addresses.isEmpty { details["addresses"] = row.addresses.joined(separator: ",") }
        if !row.owners.isEmpty { details["processes"] = row.owners.joined(separator: ",") }
        if !row.executables.isEmpty { details["executables"] = row.executables.sorted().joined(separator: ",") }
        return details
    }
}

import PortwatchCore

/// `probe_failed` / `probe_recovered`: an event when a target's health changes, never one per
/// probe. The first unhealthy result after a healthy one (or after start) is `probe_failed`; the
/// first healthy one after that is `probe_recovered`.
struct ProbeWatch: Sendable {
    /// The last health seen per target; absent until its first result.
    private var healthy: [String: Bool] = [:]

    /// Forgets targets that are no longer configured (a reload), so one that comes back starts afresh.
    mutating func keep(only targets: Set<String>) {
        healthy = healthy.filter { targets.contains($0.key) }
    }

    /// The event one result makes, if any.
    mutating func update(_ result: ProbeResult, name: String?, at now: Double) -> MonitorEvent? {
        let key = result.target.text
        let before = healthy[key]
        healthy[key] = result.healthy
        let label = name.map { "\($0) (\(key))" } ?? key
        var details = ["target": key, "state": result.state.rawValue]
        if let name { details["name"] = name }
        if let address = result.address { details["address"] = address }
        if !result.healthy && before != false {
            let why = result.problems.isEmpty ? result.state.rawValue : result.problems.joined(separator: "; ")
            if !result.problems.isEmpty { details["problems"] = result.problems.joined(separator: "; ") }
            return MonitorEvent(time: now, kind: .probeFailed, proto: result.target.proto, port: result.target.port,
                                message: "probe of \(label) failed: \(why)", details: details)
        }
        if result.healthy && before == false {
            if let latency = result.latency { details["latency_ms"] = alertNumber(latency.median) }
            return MonitorEvent(time: now, kind: .probeRecovered, proto: result.target.proto, port: result.target.port,
                                message: "probe of \(label) recovered (\(result.state.rawValue))", details: details)
        }
        return nil
    }
}

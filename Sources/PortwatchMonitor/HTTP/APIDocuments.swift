import PortwatchCore

/// The documents of the HTTP API, built from core's and the monitor's JSON views (the PORT object
/// is `PortSummary.json(service:)`, the window `PortActivity.windowJSON`), so the API and the CLI
/// speak the same shapes.
enum APIDocuments {
    /// A PORT object of `ports --json` plus the latest `window` and `rates` of its row.
    static func port(_ row: PortSummary, in latest: LatestSample, services: ServiceDatabase) -> JSONValue {
        let json = row.json(service: services.name(port: row.port, proto: row.proto))
        guard let report = latest.report, case .object(var pairs) = json else { return json }
        let activity = report.activity(PortKey(role: row.role, proto: row.proto, port: row.port))
        pairs.append(("window", activity.windowJSON(seconds: report.seconds, captured: report.captured)))
        pairs.append(("rates", activity.ratesJSON(seconds: report.seconds)))
        return .object(pairs)
    }

    /// `{"ports": [PORT, ...], "source", "taken_at", "window_seconds", "system_errors", "notes"}`.
    static func ports(_ latest: LatestSample, services: ServiceDatabase) -> JSONValue {
        let snapshot = latest.snapshot
        var doc: [(String, JSONValue)] = [
            ("ports", .array(snapshot.ports.map { port($0, in: latest, services: services) })),
            ("source", .string(snapshot.source)),
            ("taken_at", .double(snapshot.takenAt)),
        ]
        if let report = latest.report {
            doc.append(("window_seconds", .double(report.seconds)))
            doc.append(("system_errors", report.systemJSON))
        }
        doc.append(("notes", .array(snapshot.notes.map { .string($0) })))
        return .object(doc)
    }

    /// The row of a local port (or, failing that, a remote row of that number).
    static func row(_ key: MonitoredPort, in latest: LatestSample) -> PortSummary? {
        let matching = latest.snapshot.ports.filter { $0.proto == key.proto && $0.port == key.port }
        return matching.first { $0.role == .local } ?? matching.first
    }

    /// The `sample` message of `/api/v1/stream`: one compact entry per monitored port,
    /// `{"time","timestamp","window_seconds","ports":[{"protocol","port","service","listening",
    /// "addresses","connections","accept_queue","rates","errors","processes"}]}`.
    static func streamSample(_ latest: LatestSample, services: ServiceDatabase) -> JSONValue {
        let rows = latest.samples.sorted { $0.key < $1.key }
        return [
            "time": .string(rfc3339(latest.snapshot.takenAt)),
            "timestamp": .double(latest.snapshot.takenAt),
            "window_seconds": latest.report.map { .double($0.seconds) } ?? .null,
            "ports": .array(rows.map { s in
                [
                    "protocol": .string(s.proto.rawValue), "port": .number(s.port),
                    "service": .optional(services.name(port: s.port, proto: s.proto)),
                    "listening": .bool(s.listening), "addresses": .array(s.addresses.map { .string($0) }),
                    "connections": s.connections.json,
                    "accept_queue": s.acceptQueue.map { q in
                        ["current": .number(q), "max": s.acceptQueueMax.map { .number($0) } ?? .null]
                    } ?? .null,
                    "rates": s.ratesJSON, "errors": s.errorsJSON,
                    "processes": .array(s.owners.map { .string($0) }),
                ]
            }),
        ]
    }

    /// `{"events": [...]}`.
    static func events(_ events: [MonitorEvent]) -> JSONValue { ["events": .array(events.map(\.json))] }

    /// `{"alerts": [{"rule","state","protocol","port","since","value", ...}]}`.
    static func alerts(_ alerts: [Alert]) -> JSONValue { ["alerts": .array(alerts.map(\.json))] }

    /// `/healthz`: `{"status": "ok"|"stale"|"starting", "last_sample", "age_seconds", "interval_seconds"}`.
    static func health(status: String, lastSample: Double?, age: Double?, interval: Double) -> JSONValue {
        [
            "status": .string(status),
            "last_sample": lastSample.map { .string(rfc3339($0)) } ?? .null,
            "age_seconds": age.map { .double(($0 * 1000).rounded() / 1000) } ?? .null,
            "interval_seconds": .double(interval),
        ]
    }
}

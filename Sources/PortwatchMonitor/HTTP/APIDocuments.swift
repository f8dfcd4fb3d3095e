import PortwatchCore

/// The documents of the HTTP API. The PORT object and the ports document are core's JSONWriter
/// views (`PortsDocument`, `JSONWriter.port`) over core's rows (`portRows`), the very code behind
/// `ports --json` and `top --json`, so the API and the CLI speak the same shapes; the monitor's
/// own small documents (events, alerts, history) come from View/MonitorJSON.swift.
enum APIDocuments {
    /// The rows the API shows: local ports, as `ports` shows them, merged with the latest window.
    static func rows(_ latest: LatestSample) -> [PortRow] {
        portRows(snapshot: latest.snapshot, window: latest.report, includeOutgoing: false)
    }

    /// A PORT object of `ports --json` plus the latest `window` and `rates` of its row.
    static func port(_ row: PortRow, in latest: LatestSample, services: ServiceDatabase) -> [UInt8] {
        var w = JSONWriter()
        w.port(row, service: services.name(port: row.key.port, proto: row.key.proto),
               window: latest.report.map { PortWindow($0, row: row) })
        w.newline()
        return w.bytes
    }

    /// `{"ports": [PORT, ...], "source", "taken_at", "window_seconds", "system_errors",
    /// "connect_failures_without_port", "system_errors_by_namespace", "notes"}`.
    ///
    /// Without `netns`: the daemon's own rows as they always were, then each other sampled
    /// namespace's rows, each with `"netns"` (its label), `"namespace"` and, where known,
    /// `"container"`. With `netns`: only that namespace's rows, in a document over its own
    /// snapshot and window (its system counters, its notes); a namespace not sampled is a 404.
    /// `system_errors` is the document's own namespace's; `system_errors_by_namespace` (see
    /// `systemErrorsByNamespace`) lists every namespace the document covers.
    static func ports(_ latest: LatestSample, services: ServiceDatabase,
                      netns: NamespaceFilter? = nil) throws(APIError) -> [UInt8] {
        var w = JSONWriter()
        let own: (namespace: NetworkNamespace?, report: WindowReport?) = (latest.ownNamespace, latest.report)
        switch netns {
        case nil:
            let windows = NamespaceWindows([own] + latest.namespaceParts.map { ($0.namespace, $0.report) })
            PortsDocument(snapshot: latest.snapshot, report: latest.report)
                .write(rows(latest), services: services, to: &w, moreRows: { w in
                    for part in latest.namespaceParts {
                        for row in rows(part) { namespaceRow(row, of: part, services: services, to: &w) }
                    }
                }, windowMembers: { w in systemErrorsByNamespace(windows, to: &w) })
        case .host:
            PortsDocument(snapshot: latest.snapshot, report: latest.report)
                .write(rows(latest), services: services, to: &w,
                       windowMembers: { w in systemErrorsByNamespace(NamespaceWindows([own]), to: &w) })
        case .label(let label):
            let part = try self.part(label, in: latest)
            PortsDocument(snapshot: part.snapshot, report: part.report)
                .write([], services: services, to: &w, moreRows: { w in
                    for row in rows(part) { namespaceRow(row, of: part, services: services, to: &w) }
                }, windowMembers: { w in
                    systemErrorsByNamespace(NamespaceWindows([(part.namespace, part.report)]), to: &w)
                })
        }
        w.newline()
        return w.bytes
    }

    /// `"system_errors_by_namespace"`: core's entries (as in `ports --sample --all-namespaces
    /// --json`), each also with `"netns"`, the label rows and `?netns=` use (`host` for the
    /// daemon's own, even where it has a /run/netns name). Present whenever the document has a
    /// window, also without `namespaces:` (then the daemon's own entry alone), so a client reads
    /// one shape however the daemon is configured.
    private static func systemErrorsByNamespace(_ windows: NamespaceWindows, to w: inout JSONWriter) {
        w.systemErrorsByNamespace(windows) { ns, w in
            w.field("netns", ns.map { $0.isOwn ? "host" : $0.daemonLabel } ?? "host")
        }
    }

    /// The local rows of another namespace, as `rows(_:)` makes the daemon's own.
    static func rows(_ part: NamespacePart) -> [PortRow] {
        portRows(snapshot: part.snapshot, window: part.report, includeOutgoing: false)
    }

    /// One PORT object of another namespace: `"netns"`, `"namespace"` and `"container"` added.
    private static func namespaceRow(_ row: PortRow, of part: NamespacePart, services: ServiceDatabase,
                                     to w: inout JSONWriter) {
        w.port(row, service: services.name(port: row.key.port, proto: row.key.proto),
               window: part.report.map { PortWindow($0, row: row) }) { w in
            w.field("netns", part.namespace.daemonLabel)
            w.namespaceMembers(part.namespace, processes: row.summary.processes)
        }
    }

    /// The sampled namespace labelled `label`; a 404 naming the sampled ones when there is none.
    static func part(_ label: String, in latest: LatestSample) throws(APIError) -> NamespacePart {
        if let part = latest.namespaceParts.first(where: { $0.namespace.daemonLabel == label }) { return part }
        let sampled = ["host"] + latest.namespaceParts.map(\.namespace.daemonLabel).sorted()
        let more = sampled.count > 10 ? ", and \(sampled.count - 10) more" : ""
        throw APIError.notFound("network namespace '\(APIParameters.printable(label))' is not sampled (sampled: "
                                + sampled.prefix(10).joined(separator: ", ") + more + ")")
    }

    /// The PORT object of a port in the daemon's namespace or, with `netns`, another one: its
    /// local row or, failing that, a remote row of that number; nil when it has none.
    static func port(_ key: MonitoredPort, in latest: LatestSample, services: ServiceDatabase,
                     netns: NamespaceFilter?) throws(APIError) -> [UInt8]? {
        guard let label = netns?.label else {
            return row(key, in: latest).map { port($0, in: latest, services: services) }
        }
        let part = try self.part(label, in: latest)
        let matching = { (r: PortRow) in r.key.proto == key.proto && r.key.port == key.port }
        guard let row = rows(part).first(where: matching)
                ?? portRows(snapshot: part.snapshot, window: part.report, includeOutgoing: true).first(where: matching)
        else { return nil }
        var w = JSONWriter()
        namespaceRow(row, of: part, services: services, to: &w)
        w.newline()
        return w.bytes
    }

    /// The row of a local port (or, failing that, a remote row of that number).
    static func row(_ key: MonitoredPort, in latest: LatestSample) -> PortRow? {
        let local = rows(latest).first { $0.key.proto == key.proto && $0.key.port == key.port }
        if let local { return local }
        return portRows(snapshot: latest.snapshot, window: latest.report, includeOutgoing: true)
            .first { $0.key.proto == key.proto && $0.key.port == key.port }
    }

    /// The `sample` message of `/api/v1/stream`: one compact entry per monitored port,
    /// `{"time","timestamp","window_seconds","ports":[{"protocol","port","service","listening",
    /// "addresses","connections","accept_queue","rates","errors","processes"}]}`; a row of another
    /// network namespace also has `"netns"` (its label), so it never stands in for ours.
    static func streamSample(_ latest: LatestSample, services: ServiceDatabase) -> JSONValue {
        let rows = latest.samples.sorted { $0.key < $1.key }
        return [
            "time": .string(rfc3339(latest.snapshot.takenAt)),
            "timestamp": .double(latest.snapshot.takenAt),
            "window_seconds": latest.report.map { .double($0.seconds) } ?? .null,
            "ports": .array(rows.map { s in
                let entry: JSONValue = [
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
                guard let namespace = s.namespace, case .object(var pairs) = entry else { return entry }
                pairs.insert(("netns", .string(namespace)), at: 2)
                return .object(pairs)
            }),
        ]
    }

    /// `{"events": [...]}`.
    static func events(_ events: [MonitorEvent]) -> JSONValue { ["events": .array(events.map(\.json))] }

    /// `{"alerts": [{"rule","state","protocol","port","since","value", ...}]}`.
    static func alerts(_ alerts: [Alert]) -> JSONValue { ["alerts": .array(alerts.map(\.json))] }

    /// `{"probes": [...]}`: the `probe --json` entry of each probed target with its `name` and
    /// `last_change` (when its health last changed); targets not probed yet are left out.
    static func probes(_ statuses: [ProbeStatus]) -> JSONValue {
        ["probes": .array(statuses.compactMap { status -> JSONValue? in
            guard let latest = status.latest, case .object(var pairs) = ProbeJSON.entry(latest, name: status.config.name) else {
                return nil
            }
            pairs.append(("last_change", status.since.map { .string(rfc3339($0)) } ?? .null))
            return .object(pairs)
        })]
    }

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

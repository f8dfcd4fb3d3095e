// The namespace members of rows in multi-namespace views (`--netns`, `--all-namespaces`, the
// daemon with `namespaces:`), and the `ports --json` document over several namespaces.

extension NetworkNamespace {
    /// The container behind a row: the first of its processes whose cgroup names one.
    public static func container(of processes: [ProcessRecord]) -> ContainerIdentity? {
        for p in processes {
            if let id = p.container { return ContainerIdentity(id: id, runtime: p.containerRuntime ?? "unknown") }
        }
        return nil
    }
}

extension JSONWriter {
    /// `{"inode", "name", "label", "pid", "own"}`: name null for unnamed namespaces.
    public mutating func write(_ ns: NetworkNamespace) {
        beginObject()
        field("inode", ns.inode)
        field("name", ns.name)
        field("label", ns.label)
        field("pid", ns.pid)
        field("own", ns.isOwn)
        endObject()
    }

    /// `"namespace": {…}` and, when a process's cgroup names one, `"container": {"id", "runtime"}`.
    public mutating func namespaceMembers(_ ns: NetworkNamespace, processes: [ProcessRecord]) {
        key("namespace"); write(ns)
        if let c = NetworkNamespace.container(of: processes) {
            key("container")
            beginObject()
            field("id", c.id)
            field("runtime", c.runtime)
            endObject()
        }
    }
}

extension JSONWriter {
    /// `"closed_port_hits"` of a view over namespaces (`top`, `ports --sample` with `--netns` or
    /// `--all-namespaces`): each namespace's capture is its own, so every hit carries the
    /// `namespace` it was seen in (none for a part without one), busiest first; with
    /// `kernelDrops`, `"capture_kernel_drops"` summed over the namespaces. Null when no part
    /// captured packets.
    public mutating func captureMembers(_ parts: [(namespace: NetworkNamespace?, report: WindowReport?)],
                                        kernelDrops: Bool = true) {
        let captured = parts.filter { $0.report?.captured == true }
        guard !captured.isEmpty else { nullField("closed_port_hits"); return }
        var hits: [(namespace: NetworkNamespace?, key: ClosedPortKey, packets: UInt64)] = []
        for part in captured {
            for (key, packets) in part.report!.closedPortHits { hits.append((part.namespace, key, packets)) }
        }
        hits.sort { a, b in
            if a.packets != b.packets { return a.packets > b.packets }
            if a.key != b.key { return a.key < b.key }
            return (a.namespace?.inode ?? 0) < (b.namespace?.inode ?? 0)
        }
        array("closed_port_hits") { w in
            for hit in hits {
                w.beginObject()
                w.field("protocol", hit.key.proto.rawValue)
                w.field("port", hit.key.port)
                w.key("source"); w.asciiString(hit.key.source.description)
                w.field("packets", hit.packets)
                if let ns = hit.namespace { w.key("namespace"); w.write(ns) }
                w.endObject()
            }
        }
        if kernelDrops { field("capture_kernel_drops", captured.reduce(UInt64(0)) { $0 &+ $1.report!.captureKernelDrops }) }
    }
}

extension JSONWriter {
    /// The system-wide error deltas of a view over namespaces. `"system_errors"` stays what it
    /// is without the flags: the primary part's (portwatch's own namespace, or the one named
    /// with `--netns`; `{}` when there is none). Over namespaces, each namespace's own counters
    /// follow in `"system_errors_by_namespace"`: one entry per namespace with a window, in the
    /// view's order, `{"namespace", "window_seconds", "system_errors",
    /// "connect_failures_without_port"}` (the same `namespace` object as on rows and hits).
    public mutating func systemErrorMembers(_ windows: NamespaceWindows) {
        if let primary = windows.primary, let report = windows.parts[primary].report {
            systemErrors(report)
        } else {
            object("system_errors") { _ in }
        }
        guard windows.overNamespaces else { return }
        systemErrorsByNamespace(windows)
    }

    /// `"system_errors_by_namespace"`: one entry per part with a window, in the view's order,
    /// `{"namespace", "window_seconds", "system_errors", "connect_failures_without_port"}`
    /// (`namespace` left out for a part without one). `members` adds more to each entry before
    /// it closes (the daemon's `netns` label).
    public mutating func systemErrorsByNamespace(_ windows: NamespaceWindows,
                                                 members: ((NetworkNamespace?, inout JSONWriter) -> Void)? = nil) {
        array("system_errors_by_namespace") { w in
            for part in windows.parts {
                guard let report = part.report else { continue }
                w.beginObject()
                if let ns = part.namespace { w.key("namespace"); w.write(ns) }
                w.field("window_seconds", double: report.seconds)
                w.systemErrors(report)
                w.field("connect_failures_without_port", report.connectFailuresWithoutPort)
                members?(part.namespace, &w)
                w.endObject()
            }
        }
    }
}

extension JSONWriter {
    /// `"detections"` and `"security_events"` of a view over namespaces (`top --capture` with
    /// `--netns` or `--all-namespaces`): each namespace's detectors watch its own capture, so
    /// every detection carries the `namespace` it was seen in (none for a part without one).
    /// Nulls when no part ran the detectors.
    public mutating func securityMembers(_ parts: [(namespace: NetworkNamespace?, report: SecurityReport?)]) {
        let ran = parts.filter { $0.report != nil }
        guard !ran.isEmpty else { securityMembers(nil); return }
        func tagged(_ events: (SecurityReport) -> [SecurityEvent]) -> [(NetworkNamespace?, SecurityEvent)] {
            let all = ran.flatMap { part in events(part.report!).map { (part.namespace, $0) } }
            return ran.count == 1 ? all : all.sorted { $0.1.time < $1.1.time }
        }
        func list(_ events: [(NetworkNamespace?, SecurityEvent)], to w: inout JSONWriter) {
            for (ns, e) in events {
                w.write(e) { w in if let ns { w.key("namespace"); w.write(ns) } }
            }
        }
        array("detections") { w in list(tagged(\.active), to: &w) }
        array("security_events") { w in list(tagged(\.events), to: &w) }
    }
}

/// `ports --json` over several namespaces: the same PORT rows, each with its namespace.
public struct NamespacePortsDocument {
    public var snapshot: NamespaceSnapshot
    /// Notes beyond the snapshot's (namespaces not discovered).
    public var notes: [String]

    public init(snapshot: NamespaceSnapshot, notes: [String] = []) {
        self.snapshot = snapshot
        self.notes = notes
    }

    /// `{"ports": [PORT + namespace, …], "namespaces": [...], "source", "taken_at",
    /// ["window_seconds", "system_errors", "system_errors_by_namespace", "closed_port_hits",
    /// …], "notes"}`; `rows` pairs each row with its part's index.
    public func write(_ rows: [(part: Int, row: PortRow)], services: ServiceDatabase, to w: inout JSONWriter) {
        let parts = snapshot.parts
        w.beginObject()
        w.array("ports") { w in
            for (index, row) in rows {
                let part = parts[index]
                w.port(row, service: services.name(port: row.key.port, proto: row.key.proto),
                       window: part.report.map { PortWindow($0, row: row) }) { w in
                    w.namespaceMembers(part.namespace, processes: row.summary.processes)
                }
            }
        }
        w.array("namespaces") { w in
            for part in parts { w.write(part.namespace) }
        }
        w.field("source", parts.first?.snapshot.source ?? "sock_diag")
        w.field("taken_at", double: parts.first?.snapshot.takenAt ?? 0)
        let windows = NamespaceWindows(parts.map { ($0.namespace, $0.report) })
        if let seconds = windows.seconds {
            w.field("window_seconds", double: seconds)
            w.systemErrorMembers(windows)
            w.captureMembers(windows.parts)
        }
        var all = notes
        for note in snapshot.notes + parts.flatMap({ $0.snapshot.notes + ($0.report?.notes ?? []) }) where !all.contains(note) {
            all.append(note)
        }
        w.notes(all)
        w.endObject()
    }
}

// The JSON view: every document portwatch prints (PRODUCT.md "JSON shapes") is written here,
// straight into a `JSONWriter`. The CLI commands and the daemon's API call these functions;
// none of them builds a PORT object of its own.

// MARK: - Pieces shared by every document

extension JSONWriter {
    /// `{"current": n, "max": n}` (max null when unknown), or null.
    public mutating func write(_ queue: QueueDepth?) {
        guard let queue else { null(); return }
        beginObject()
        field("current", queue.current)
        field("max", queue.max)
        endObject()
    }

    /// Connections by state, with their total.
    public mutating func write(_ c: ConnectionCounts) {
        beginObject()
        field("established", c.established)
        field("syn_recv", c.synRecv)
        field("syn_sent", c.synSent)
        field("time_wait", c.timeWait)
        field("close_wait", c.closeWait)
        field("fin_wait", c.finWait)
        field("other", c.other)
        field("total", c.total)
        endObject()
    }

    /// A process; `holds` and `sockets` (for `who`) say how it holds the port and with which sockets.
    public mutating func write(_ p: ProcessRecord, holds: [HoldKind]? = nil, sockets: [String]? = nil) {
        beginObject()
        field("pid", p.pid)
        field("name", p.name)
        field("user", p.user)
        field("uid", p.uid)
        field("command", p.command)
        field("unit", p.unit)
        field("container", p.container)
        if let runtime = p.containerRuntime { field("container_runtime", runtime) }
        if let holds { strings("holds", holds.map(\.rawValue)) }
        if let sockets { strings("sockets", sockets) }
        endObject()
    }

    /// `"name": [process, ...]`.
    public mutating func processes(_ name: StaticString, _ list: [ProcessRecord]) {
        key(name)
        beginArray()
        for p in list { write(p) }
        endArray()
    }

    /// `{"address": "…", "port": n}`.
    public mutating func write(_ e: Endpoint) {
        beginObject()
        key("address")
        address(of: e)
        field("port", e.port)
        endObject()
    }

    /// An endpoint's address as a string, with its `%zone` when link-local (`fe80::1%eth0`).
    public mutating func address(of e: Endpoint) {
        if e.scope != 0 { string(e.addressText) } else { address(e.address) }
    }

    /// `{"received": n, "sent": n}`.
    public mutating func inOut<T: BinaryInteger>(_ name: StaticString, received: T, sent: T) {
        key(name)
        beginObject()
        field("received", received)
        field("sent", sent)
        endObject()
    }

    /// `"notes": ["…", …]`.
    public mutating func notes(_ list: [String]) { strings("notes", list) }
}

// MARK: - PORT (ports, check, top, the daemon's API)

/// A port's window: what happened on it between two samples, and the report it came from.
public struct PortWindow: Sendable {
    public var activity: PortActivity
    public var seconds: Double
    public var captured: Bool
    /// When the window started and ended (wall clock, seconds since the epoch; 0 when unknown).
    public var startedAt: Double = 0
    public var endedAt: Double = 0

    /// A window's activity on one port, its length, and whether packets were captured.
    public init(activity: PortActivity, seconds: Double, captured: Bool) {
        self.activity = activity
        self.seconds = seconds
        self.captured = captured
    }

    /// The window of one port in a report.
    public init(_ report: WindowReport, key: PortKey) {
        self.init(activity: report.activity(key), seconds: report.seconds, captured: report.captured)
        startedAt = report.startedAt
        endedAt = report.endedAt
    }

    /// The window of a row merged with `report` (the row carries its activity).
    public init(_ report: WindowReport, row: PortRow) {
        self.init(activity: row.activity, seconds: report.seconds, captured: report.captured)
    }
}

extension JSONWriter {
    /// The `PORT` object of `ports --json`, `top --json` and the daemon: the row's summary, its
    /// `state` and overload `reasons` (the window's drops and SYN cookies count), and `window`
    /// and `rates` when measured over one (`window` carries the row's own activity).
    /// `members` adds more before the object closes (the namespace of a multi-namespace view).
    public mutating func port(_ row: PortRow, service: String?, window: PortWindow? = nil,
                              members: (inout JSONWriter) -> Void = { _ in }) {
        beginObject()
        portMembers(row.summary, service: service, overloaded: row.overloaded)
        field("state", row.state.rawValue)
        overloadReasons(row.reasons)
        if let window { windowMembers(window) }
        members(&self)
        endObject()
    }

    /// `"reasons": [{"reason", "count", "limit", "message"}, …]`: why a port is overloaded.
    public mutating func overloadReasons(_ reasons: [OverloadReason]) {
        array("reasons") { w in
            for r in reasons {
                w.beginObject()
                w.field("reason", r.name)
                w.field("count", r.count)
                w.field("limit", r.limit)
                w.field("message", r.message)
                w.endObject()
            }
        }
    }

    /// The members of a PORT object, for documents that extend it; `overloaded` defaults to the
    /// snapshot's own judgement (a row merged with a window passes its own).
    public mutating func portMembers(_ s: PortSummary, service: String?, overloaded: Bool? = nil) {
        field("protocol", s.proto.rawValue)
        field("port", s.port)
        field("service", service)
        field("role", s.role.rawValue)
        field("listening", s.listening)
        strings("addresses", s.addresses)
        key("connections"); write(s.connections)
        field("bound_sockets", s.boundSockets)
        key("accept_queue"); write(s.acceptQueue)
        inOut("bytes", received: s.traffic.bytesReceived, sent: s.traffic.bytesSent)
        inOut("packets", received: s.traffic.packetsReceived, sent: s.traffic.packetsSent)
        field("retransmits", s.traffic.retransmits)
        field("drops", s.traffic.drops &+ s.listenDrops)
        field("overloaded", overloaded ?? s.overloaded)
        key("errors"); portErrors(s)
        processes("processes", s.processes)
        if s.role == .local {
            array("listeners") { w in
                for l in s.listeners {
                    w.beginObject()
                    w.key("address"); w.address(of: l.local)
                    w.field("port", l.local.port)
                    // null for IPv4 listeners and where the source cannot tell (/proc/net).
                    w.key("v6only")
                    if let v6only = l.v6only { w.bool(v6only) } else { w.null() }
                    w.field("accept_queue", l.acceptQueue)
                    w.field("backlog", l.backlogKnown ? l.backlog : nil)
                    w.field("drops", l.drops)
                    w.field("inode", l.inode)
                    w.field("uid", l.uid)
                    w.endObject()
                }
            }
        }
    }

    /// Named error counters of a port, as its sockets carry them now (lifetime totals).
    public mutating func portErrors(_ s: PortSummary) {
        // A bound UDP socket's drops are receive-buffer drops, not listen drops.
        beginObject()
        field("listen_drops", s.proto == .tcp ? s.listenDrops : 0)
        field("drops", s.proto == .tcp ? s.traffic.drops : s.traffic.drops &+ s.listenDrops)
        field("retransmits", s.traffic.retransmits)
        field("syn_backlog", s.connections.synRecv)
        field("accept_queue_full", s.acceptQueueFull)
        endObject()
    }

    /// `"window": {…}, "rates": {…}` of `--sample` output (`resets_*` only when packets were captured);
    /// with `times`, the window's `started_at` and `ended_at` (a check's window, which over
    /// several namespaces shows they were sampled together).
    public mutating func windowMembers(_ w: PortWindow, times: Bool = false) {
        let a = w.activity
        object("window") { j in
            j.field("seconds", double: w.seconds)
            if times && w.endedAt > 0 {
                j.field("started_at", double: w.startedAt)
                j.field("ended_at", double: w.endedAt)
            }
            j.inOut("bytes", received: a.traffic.bytesReceived, sent: a.traffic.bytesSent)
            j.inOut("packets", received: a.traffic.packetsReceived, sent: a.traffic.packetsSent)
            j.field("connections_opened", a.opened)
            j.field("connections_closed", a.closed)
            j.object("errors") { e in
                e.field("listen_drops", a.listenDrops)
                e.field("drops", a.traffic.drops)
                e.field("retransmits", a.traffic.retransmits)
                e.field("connect_timeouts", a.connectTimeouts)
                e.field("connect_refused", a.connectRefused)
                if w.captured {
                    e.field("resets_sent", a.resetsSent)
                    e.field("resets_received", a.resetsReceived)
                }
            }
        }
        let s = w.seconds > 0 ? w.seconds : 1
        object("rates") { j in
            j.field("received_bps", double: (Double(a.traffic.bytesReceived) * 8 / s).rounded())
            j.field("sent_bps", double: (Double(a.traffic.bytesSent) * 8 / s).rounded())
            j.field("received_pps", double: (Double(a.traffic.packetsReceived) / s * 10).rounded() / 10)
            j.field("sent_pps", double: (Double(a.traffic.packetsSent) / s * 10).rounded() / 10)
        }
    }

    /// System-wide error deltas of a window: `"system_errors": {"ListenOverflows": n, …}`.
    public mutating func systemErrors(_ report: WindowReport) {
        object("system_errors") { w in
            for (name, value) in report.system {
                w.key(name)
                w.int(value)
            }
        }
    }

    /// `"closed_port_hits": [...]` (busiest first) and `"capture_kernel_drops"` when packets were
    /// captured; `"closed_port_hits": null` otherwise.
    public mutating func captureMembers(_ report: WindowReport?, kernelDrops: Bool = true) {
        guard let report, report.captured else { nullField("closed_port_hits"); return }
        array("closed_port_hits") { w in
            let sorted = report.closedPortHits.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }
            for (key, count) in sorted {
                w.beginObject()
                w.field("protocol", key.proto.rawValue)
                w.field("port", key.port)
                w.key("source"); w.asciiString(key.source.description)
                w.field("packets", count)
                w.endObject()
            }
        }
        if kernelDrops { field("capture_kernel_drops", report.captureKernelDrops) }
    }
}

/// `ports --json`: the document's parts, written in order so rows stream out as they are written.
public struct PortsDocument {
    public var snapshot: PortSnapshot
    public var report: WindowReport?

    /// A document over one snapshot and, with `--sample`, its window.
    public init(snapshot: PortSnapshot, report: WindowReport?) {
        self.snapshot = snapshot
        self.report = report
    }

    /// `{"ports": [PORT, …], "source", "taken_at", ["window_seconds", "system_errors",
    /// "connect_failures_without_port", …], "notes"}`; `rows` are `portRows` of the snapshot
    /// merged with the report. `moreRows` appends rows written elsewhere to the list (the
    /// daemon's other namespaces, each with its own window and namespace members);
    /// `windowMembers` adds members after the window's, only when there is a window (the
    /// daemon's `system_errors_by_namespace`).
    public func write(_ rows: [PortRow], services: ServiceDatabase, to w: inout JSONWriter,
                      moreRows: (inout JSONWriter) -> Void = { _ in },
                      windowMembers: (inout JSONWriter) -> Void = { _ in }) {
        w.beginObject()
        w.array("ports") { w in
            for row in rows {
                w.port(row, service: services.name(port: row.key.port, proto: row.key.proto),
                       window: report.map { PortWindow($0, row: row) })
            }
            moreRows(&w)
        }
        w.field("source", snapshot.source)
        w.field("taken_at", double: snapshot.takenAt)
        if let report {
            w.field("window_seconds", double: report.seconds)
            w.systemErrors(report)
            w.field("connect_failures_without_port", report.connectFailuresWithoutPort)
            if report.captured { w.captureMembers(report) }
            windowMembers(&w)
        }
        w.notes(snapshot.notes)
        w.endObject()
    }
}

// MARK: - check

/// What a check was asked to meet, and whether it did.
public struct CheckOutcome: Sendable {
    public var expected: Verdict
    public var matched: Bool

    /// The expectation and whether the verdict met it.
    public init(expected: Verdict, matched: Bool) {
        self.expected = expected
        self.matched = matched
    }
}

extension JSONWriter {
    /// One local `check --json` result: the verdict and the facts behind it (listeners,
    /// connections, queue, overload reasons, caveats, errors, owners), and the window when
    /// measured; `systemErrors` adds the window's system-wide deltas (a single check's document).
    /// `members` adds more before the object closes (the namespace checked).
    public mutating func localCheck(_ check: LocalCheck, _ outcome: CheckOutcome, service: String?, window: PortWindow?,
                                    systemErrors report: WindowReport? = nil,
                                    members: ((inout JSONWriter) -> Void)? = nil) {
        beginObject()
        field("protocol", check.proto.rawValue)
        field("port", check.port)
        nullField("host")
        field("service", service)
        field("verdict", check.verdict.rawValue)
        field("expected", outcome.expected.rawValue)
        field("matched", outcome.matched)
        // `check 1-65535`: tens of thousands of ports with nothing on them share one encoding.
        if !pretty && check.summary == nil && check.connections.total == 0 && check.boundSockets == 0
            && window == nil && report == nil && members == nil {
            endObject(appendingEncodedMembers: JSONWriter.emptyCheckMembers)
            return
        }
        localCheckFacts(check, window: window)
        if let report { systemErrors(report) }
        members?(&self)
        endObject()
    }

    /// The members of a check of a port nothing holds, encoded once.
    static let emptyCheckMembers: [UInt8] = {
        var w = JSONWriter()
        w.beginObject()
        w.localCheckFacts(LocalCheck(proto: .tcp, port: 1, verdict: .free, summary: nil, listening: false,
                                     connections: ConnectionCounts(), boundSockets: 0, clientConnections: 0, reasons: []),
                          window: nil)
        w.endObject()
        return Array(w.bytes.dropFirst())
    }()

    /// A local check's facts: listeners, the connections the verdict counted, queue, overload
    /// reasons, caveats, errors, owners, window.
    mutating func localCheckFacts(_ check: LocalCheck, window: PortWindow?) {
        let s = check.summary
        field("listening", check.listening)
        strings("addresses", s?.addresses ?? [])
        key("connections"); write(check.connections)
        key("accept_queue"); write(s?.acceptQueue)
        field("time_wait", check.timeWait)
        field("bound_sockets", check.boundSockets)
        field("client_connections", check.clientConnections)
        overloadReasons(check.reasons)
        strings("caveats", check.caveats)
        key("errors")
        if let s { portErrors(s) } else { null() }
        processes("processes", s?.processes ?? [])
        if let window { windowMembers(window, times: true) }
    }

    /// One remote `check --json` result: the verdict, the address that decided it, and every
    /// address tried.
    public mutating func remoteCheck(_ check: RemoteCheck, _ outcome: CheckOutcome, service: String?) {
        beginObject()
        field("protocol", check.proto.rawValue)
        field("port", check.port)
        field("host", check.host)
        field("service", service)
        field("verdict", Verdict(check.state).rawValue)
        field("expected", outcome.expected.rawValue)
        field("matched", outcome.matched)
        key("address"); string(check.decisive.address.description)
        field("reason", check.decisive.reason)
        field("seconds", double: microseconds(check.decisive.seconds))
        array("attempts") { w in
            for a in check.attempts {
                w.beginObject()
                w.key("address"); w.string(a.address.description)
                w.field("state", a.state.rawValue)
                w.field("reason", a.reason)
                w.field("seconds", double: microseconds(a.seconds))
                w.endObject()
            }
        }
        endObject()
    }
}

/// Seconds rounded to the microsecond: a connect's timing is not finer than that.
private func microseconds(_ seconds: Double) -> Double { (seconds * 1e6).rounded() / 1e6 }

// MARK: - connections

extension JSONWriter {
    /// One entry of `connections --json`; `processes` when asked for.
    public mutating func connection(_ c: SocketRecord, processes list: [ProcessRecord]? = nil,
                                    members: (inout JSONWriter) -> Void = { _ in }) {
        beginObject()
        field("protocol", c.proto.rawValue)
        field("state", c.state.name)
        key("local"); write(c.local)
        key("peer"); write(c.peer)
        inOut("bytes", received: c.payloadReceived, sent: c.payloadSent)
        inOut("packets", received: c.tcp?.segmentsIn ?? 0, sent: c.tcp?.segmentsOut ?? 0)
        field("retransmits", c.tcp?.totalRetransmits ?? 0)
        key("rtt_ms")
        if let tcp = c.tcp { double(Double(tcp.rttMicros) / 1000) } else { null() }
        field("receive_queue", c.receiveQueue)
        field("send_queue", c.sendQueue)
        field("drops", c.drops)
        field("uid", c.uid)
        field("inode", c.inode)
        field("cookie", c.cookie)
        if let tcp = c.tcp {
            field("lost", tcp.lost)
            field("bytes_retransmitted", tcp.bytesRetransmitted)
        }
        if let list { processes("processes", list) }
        members(&self)
        endObject()
    }
}

// MARK: - who, wait, free, kill

extension JSONWriter {
    /// One port of `who --json`: `{"port", "protocol", "processes": [{…, "holds", "sockets"}],
    /// ["unattributed_sockets"]}` (the sockets whose owner could not be seen, when there are any);
    /// `members` adds more (notes) before the object closes.
    public mutating func whoEntry(_ h: PortHolders, members: (inout JSONWriter) -> Void = { _ in }) {
        beginObject()
        field("port", h.port)
        field("protocol", h.proto.rawValue)
        array("processes") { w in
            for p in h.processes {
                let held = h.sockets(heldBy: p.pid)
                let kinds = HoldKind.allCases.filter { k in held.contains { $0.kind == k } }
                w.write(p, holds: kinds, sockets: held.map(\.description))
            }
        }
        let unattributed = h.unattributed
        if !unattributed.isEmpty { strings("unattributed_sockets", unattributed.map(\.description)) }
        members(&self)
        endObject()
    }

    /// One port of `wait --json`'s `"ports"` list.
    public mutating func waitedPort(_ proto: TransportProtocol, _ port: UInt16, state: String, reached: Bool) {
        beginObject()
        field("protocol", proto.rawValue)
        field("port", port)
        field("state", state)
        field("reached", reached)
        endObject()
    }

    /// A process `kill` signalled, with the ports it held.
    public mutating func signalled(_ p: ProcessRecord, ports: [String]) {
        beginObject()
        field("pid", p.pid)
        field("name", p.name)
        strings("ports", ports)
        endObject()
    }
}

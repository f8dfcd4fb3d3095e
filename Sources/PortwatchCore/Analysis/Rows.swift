/// What a port row is doing, in one word (the STATE column of `ports` and `top`).
public enum PortState: String, Sendable, Hashable {
    /// TCP listener.
    case listen
    /// Bound UDP socket, or a TCP socket bound without listening.
    case bound
    /// Listening, and overloaded (see the row's reasons).
    case overloaded
    /// No listener; only TIME_WAIT sockets remain.
    case timeWait = "time-wait"
    /// No listener; live connections (server side whose listener closed).
    case connected
    /// Outgoing connections grouped by remote port.
    case outgoing
}

/// One port row of a view: the snapshot's summary merged with the window that ended with it.
public struct PortRow: Sendable {
    public var summary: PortSummary
    /// What happened on the port during the window (empty without a window).
    public var activity: PortActivity
    /// Why the port is overloaded: its queues now, and drops or SYN cookies in the window.
    public var reasons: [OverloadReason]

    public var key: PortKey { summary.key }
    public var overloaded: Bool { !reasons.isEmpty }

    /// The window's errors on this port, plus the SYN cookies the system sent for it.
    public var errorCount: UInt64 {
        let cookies = reasons.reduce(0) { if case .syncookiesSent(let n) = $1 { return $0 + n } else { return $0 } }
        return activity.errorCount &+ UInt64(cookies)
    }

    /// The row's state in one word.
    public var state: PortState {
        let s = summary
        if s.role == .remote { return .outgoing }
        if s.listening { return overloaded ? .overloaded : (s.proto == .udp ? .bound : .listen) }
        if s.connections.total == 0 && s.boundSockets > 0 { return .bound }
        if s.connections.total > 0 && s.connections.total == s.connections.timeWait { return .timeWait }
        return .connected
    }
}

/// Why a listening port is overloaded: its queues now (`summary.overloadReasons`), drops that
/// rose during the window, and SYN cookies (counted system-wide) named on a port whose SYN
/// queue was at its limit or that dropped SYNs. Listeners read without their backlog (procfs)
/// carry the system's listen drops of the window (`systemListenDrops`) instead. The one rule for
/// `check`, `ports`, `top` and the daemon.
public func overloadReasons(_ summary: PortSummary, activity: PortActivity?, syncookies: Int64,
                            systemListenDrops: Int64 = 0) -> [OverloadReason] {
    guard summary.role == .local, summary.listening else { return [] }
    var reasons = summary.overloadReasons
    if let activity {
        if summary.proto == .tcp && activity.listenDrops > 0 {
            reasons.append(.listenDropsRising(Int(clamping: activity.listenDrops)))
        }
        if summary.proto == .udp {
            let drops = activity.traffic.drops &+ activity.listenDrops
            if drops > 0 { reasons.append(.udpDropsRising(Int(clamping: drops))) }
        }
    }
    // /proc/net/tcp has neither the backlog nor per-listener drops: the system-wide counters are
    // all that tells such a listener may be dropping.
    if summary.proto == .tcp && systemListenDrops > 0 && !summary.listeners.allSatisfy(\.backlogKnown) {
        reasons.append(.systemListenDropsRising(Int(clamping: systemListenDrops)))
    }
    if syncookies > 0 && summary.proto == .tcp && !reasons.isEmpty {
        reasons.append(.syncookiesSent(Int(clamping: syncookies)))
    }
    return reasons
}

extension WindowReport {
    /// SYN cookies the system sent during the window.
    public var syncookiesSent: Int64 { system.first { $0.0 == "syncookies_sent" }?.1 ?? 0 }

    /// Listen drops the system counted during the window (ListenDrops includes ListenOverflows;
    /// the larger is taken in case a kernel counts them apart).
    public var systemListenDrops: Int64 {
        max(system.first { $0.0 == "listen_drops" }?.1 ?? 0, system.first { $0.0 == "listen_overflows" }?.1 ?? 0)
    }

    /// The system's nonzero error deltas, `name count` (for the system line of tables).
    public var systemErrorsLine: String? {
        var parts = system.filter { $0.1 > 0 }.map { "\($0.0) \($0.1)" }
        if connectFailuresWithoutPort > 0 { parts.append("connect_failures_without_port \(connectFailuresWithoutPort)") }
        return parts.isEmpty ? nil : parts.joined(separator: ", ")
    }
}

/// The rows of a snapshot merged with its window, in key order: every row of the snapshot
/// (outgoing ones only with `includeOutgoing`), plus a row for each port whose connections all
/// came and went inside the window, each with its activity and overload reasons. `ports
/// --sample`, `top` and the daemon show these rows; `filter` keeps only the ports asked for.
public func portRows(snapshot: PortSnapshot, window: WindowReport?, includeOutgoing: Bool,
                     filter: PortSpec? = nil) -> [PortRow] {
    let syncookies = window?.syncookiesSent ?? 0
    let systemListenDrops = window?.systemListenDrops ?? 0
    var rows: [PortRow] = []
    rows.reserveCapacity(snapshot.ports.count)
    var present = Set<PortKey>()
    for summary in snapshot.ports {
        if summary.role == .remote && !includeOutgoing { continue }
        if let filter, !filter.contains(port: summary.port, proto: summary.proto) { continue }
        let activity = window?.ports[summary.key]
        present.insert(summary.key)
        rows.append(PortRow(summary: summary, activity: activity ?? PortActivity(),
                            reasons: overloadReasons(summary, activity: activity, syncookies: syncookies,
                                                     systemListenDrops: systemListenDrops)))
    }
    for (key, activity) in window?.ports ?? [:] where !present.contains(key) && !activity.isQuiet {
        if key.role == .remote && !includeOutgoing { continue }
        if let filter, !filter.contains(port: key.port, proto: key.proto) { continue }
        rows.append(PortRow(summary: PortSummary(proto: key.proto, port: key.port, role: key.role),
                            activity: activity, reasons: []))
    }
    rows.sort { $0.key < $1.key }
    return rows
}

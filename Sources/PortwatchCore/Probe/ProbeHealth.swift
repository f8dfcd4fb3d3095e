import Foundation

/// Why a probe's findings make its target unhealthy, one reason per entry; empty when healthy.
/// The CLI's exit code, the nagios status and the daemon's `probe_success` all come from this.
public func probeProblems(state: RemoteState, tls: TLSReport?, expect: ExpectReport?, options: ProbeOptions) -> [String] {
    var problems: [String] = []
    switch state {
    case .open: break
    case .openFiltered: problems.append("no answer (open|filtered)")
    case .closed: problems.append("closed (refused)")
    case .filtered: problems.append("filtered (no answer within the timeout)")
    case .unreachable: problems.append("unreachable")
    }
    if let tls {
        // --insecure accepts an unverified chain but never an expired or soon-expiring one.
        if !tls.verified && !options.insecure {
            problems.append("certificate not verified: \(tls.verifyError ?? "unknown reason")")
        }
        if tls.daysLeft < 0 {
            problems.append("certificate expired \(-tls.daysLeft) day\(tls.daysLeft == -1 ? "" : "s") ago")
        } else if tls.daysLeft < options.warnDays {
            problems.append("certificate expires in \(tls.daysLeft) day\(tls.daysLeft == 1 ? "" : "s") (warning at \(options.warnDays))")
        }
    }
    if let expect, !expect.matched {
        problems.append(expect.received.isEmpty ? "expected reply not received (nothing came)"
                                                : "reply did not match --expect: \(expect.received)")
    }
    return problems
}

/// The monitoring-plugins status (Nagios, Icinga, Zabbix): the exit code is the raw value.
public enum PluginStatus: Int32, Sendable, Comparable, CaseIterable {
    case ok = 0, warning = 1, critical = 2, unknown = 3

    /// `OK`, `WARNING`, `CRITICAL`, `UNKNOWN`, as the status line spells them.
    public var word: String {
        switch self {
        case .ok: return "OK"
        case .warning: return "WARNING"
        case .critical: return "CRITICAL"
        case .unknown: return "UNKNOWN"
        }
    }

    /// Worse means higher, except that UNKNOWN ranks between WARNING and CRITICAL
    /// (the monitoring-plugins rule for combining several checks).
    private var rank: Int {
        switch self {
        case .ok: return 0
        case .warning: return 1
        case .unknown: return 2
        case .critical: return 3
        }
    }

    public static func < (a: Self, b: Self) -> Bool { a.rank < b.rank }
}

extension ProbeResult {
    /// The plugin status of this probe: CRITICAL when the port is not open, verification failed
    /// (without --insecure), the reply did not match, or the certificate is expired or within
    /// `criticalDays`; WARNING within `warnDays` or for a UDP port that gave no answer.
    public func pluginStatus(options: ProbeOptions) -> PluginStatus {
        // As check_tcp: a name that does not resolve is CRITICAL (the service cannot be reached).
        if address == nil { return .critical }
        var status = PluginStatus.ok
        switch state {
        case .open: break
        case .openFiltered: status = .warning
        case .closed, .filtered, .unreachable: return .critical
        }
        if let expect, !expect.matched { return .critical }
        if options.tls && tls == nil { return .critical }
        if let tls {
            if !tls.verified && !options.insecure { return .critical }
            if tls.daysLeft < options.criticalDays { return .critical }
            if tls.daysLeft < options.warnDays { status = max(status, .warning) }
        }
        return status
    }
}

// TLS in the audit: which listeners get a handshake, and what the handshake's report means.
// The handshake itself is the prober's (PortwatchProbe); the CLI runs it and hands the
// reports in as plain `TLSReport` values, so the core never depends on the TLS stack.

/// TCP ports where a TLS service is expected: HTTPS, SMTPS/submissions, LDAPS, DNS over TLS,
/// IMAPS, POP3S, the alternative HTTPS ports, Kubernetes API, Docker TLS, FTPS, IRCS, XMPP over TLS.
public let wellKnownTLSPorts: Set<UInt16> = [443, 465, 563, 636, 853, 989, 990, 992, 993, 994, 995, 2376, 4443,
                                              5061, 5223, 5986, 6443, 6697, 8443, 9443, 10250]

/// Certificates expiring in fewer days than this are a medium finding.
public let certificateWarningDays = 14

/// One handshake the audit wants: the listener and the address to reach it on from here.
public struct TLSAuditTarget: Sendable, Hashable {
    public var key: PortKey
    /// An address of this host the listener accepts on: loopback for wildcard listeners.
    public var host: String
}

/// The TCP listeners to try a TLS handshake on: those on a well-known TLS port, or every TCP
/// listener when `everyListener` (a silent non-TLS service then holds its handshake until the
/// timeout, which is why that is not the default).
public func tlsAuditTargets(_ rows: [PortSummary], everyListener: Bool) -> [TLSAuditTarget] {
    rows.compactMap { row in
        guard row.proto == .tcp, everyListener || wellKnownTLSPorts.contains(row.port),
              let ip = row.listeners.first?.local.address else { return nil }
        let host: IPAddress = ip.isWildcard ? (ip.isV6 ? IPAddress("::1")! : IPAddress("127.0.0.1")!) : ip
        return TLSAuditTarget(key: row.key, host: host.description)
    }
}

/// The findings of one listener's TLS report: an expired certificate (high), one expiring within
/// `certificateWarningDays` (medium), TLS 1.0/1.1 negotiated (medium), a self-signed or untrusted
/// certificate on a listener reachable from outside (low). A hostname mismatch is not judged:
/// the audit connects by address and cannot know the name clients use.
public func tlsFindings(_ tls: TLSReport, proto: TransportProtocol, port: UInt16, exposure: Exposure) -> [AuditFinding] {
    var out: [AuditFinding] = []
    func add(_ s: Severity, _ reason: String) { out.append(AuditFinding(severity: s, proto: proto, port: port, reason: reason)) }
    if tls.daysLeft < 0 {
        add(.high, "TLS certificate expired \(-tls.daysLeft) days ago (\(tls.subject))")
    } else if tls.daysLeft < certificateWarningDays {
        add(.medium, "TLS certificate expires in \(tls.daysLeft) days (under \(certificateWarningDays)) (\(tls.subject))")
    }
    if tls.version == "TLSv1.0" || tls.version == "TLSv1.1" {
        add(.medium, "negotiates \(tls.version), deprecated (RFC 8996)")
    }
    if exposure != .loopback, !tls.verified, let why = tls.verifyError,
       !why.hasPrefix("hostname mismatch"), !why.hasPrefix("certificate has expired") {
        add(.low, "TLS certificate not trusted: \(why)")
    }
    return out
}

import PortwatchCore

extension ProbeResult {
    /// How long the target took to answer, for `portwatch_probe_duration_seconds`: the median
    /// connect time plus the TLS handshake when it connected, else the time the attempts waited.
    var duration: Duration {
        var ms = latency?.median ?? (attempts.map(\.seconds).max() ?? 0) * 1000
        if let tls { ms += tls.handshakeMs }
        return .nanoseconds(Int64((ms * 1e6).rounded()))
    }
}

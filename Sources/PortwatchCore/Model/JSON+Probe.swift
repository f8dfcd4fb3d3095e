import Foundation

// MARK: - probe (`probe --json`, the daemon's probe API)

extension JSONWriter {
    /// One `probe --json` entry: the PRODUCT.md fields (`target`, `host`, `port`, `address`,
    /// `state`, `healthy`, `latency_ms`, `loss`, `tls`, `expect`) plus `protocol`, `attempts`
    /// (every resolved address), `count`, `problems` and `time`.
    public mutating func probeResult(_ r: ProbeResult) {
        beginObject()
        field("target", r.target.text)
        field("host", r.target.host)
        field("port", r.target.port)
        field("protocol", r.target.proto.rawValue)
        field("address", r.address)
        field("state", r.state.rawValue)
        field("healthy", r.healthy)
        if let l = r.latency {
            object("latency_ms") { w in
                w.field("min", double: roundedMs(l.min))
                w.field("median", double: roundedMs(l.median))
                w.field("p95", double: roundedMs(l.p95))
                w.field("p99", double: roundedMs(l.p99))
                w.field("max", double: roundedMs(l.max))
                w.field("stddev", double: roundedMs(l.stddev))
                w.field("mean", double: roundedMs(l.mean))
            }
        } else {
            nullField("latency_ms")
        }
        field("loss", double: r.loss)
        field("count", r.count)
        if let t = r.tls {
            object("tls") { w in
                w.field("version", t.version)
                w.field("cipher", t.cipher.isEmpty ? nil : t.cipher)
                w.field("alpn", t.alpn)
                w.field("subject", t.subject)
                w.field("issuer", t.issuer)
                w.strings("sans", t.sans)
                w.field("not_after", isoTime(t.notAfter))
                w.field("days_left", t.daysLeft)
                w.field("verified", t.verified)
                w.field("verify_error", t.verifyError)
                w.field("handshake_ms", double: roundedMs(t.handshakeMs))
            }
        } else {
            nullField("tls")
        }
        if let e = r.expect {
            object("expect") { w in
                w.field("matched", e.matched)
                w.field("received", e.received)
            }
        } else {
            nullField("expect")
        }
        array("attempts") { w in
            for a in r.attempts {
                w.beginObject()
                w.key("address"); w.string(a.address.description)
                w.field("state", a.state.rawValue)
                w.field("reason", a.reason)
                w.field("ms", double: roundedMs(a.seconds * 1000))
                w.endObject()
            }
        }
        strings("problems", r.problems)
        field("time", isoTime(r.time))
        endObject()
    }

    /// The whole `probe --json` document.
    public mutating func probes(_ results: [ProbeResult]) {
        beginObject()
        array("probes") { w in for r in results { w.probeResult(r) } }
        endObject()
    }
}

/// Milliseconds to the microsecond.
private func roundedMs(_ ms: Double) -> Double { (ms * 1000).rounded() / 1000 }

/// RFC 3339 in UTC, to the second.
func isoTime(_ date: Date) -> String {
    var t = time_t(date.timeIntervalSince1970.rounded(.down))
    var parts = tm()
    gmtime_r(&t, &parts)
    func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
    return "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday))T\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec))Z"
}

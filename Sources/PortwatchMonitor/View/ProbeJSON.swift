import Foundation
import PortwatchCore

/// JSON of probe results: the `probe --json` entry for `/api/v1/probes`, and history points.
/// Static functions rather than a `json` property on core's `ProbeResult`, so the probe command's
/// own view of the same type never clashes with this one.
public enum ProbeJSON {
    /// One `probe --json` entry: `{"target","host","port","address","state","healthy","latency_ms",
    /// "loss","tls","expect"}` plus the daemon's `name`, `time`, `timestamp` and `problems`.
    public static func entry(_ r: ProbeResult, name: String? = nil) -> JSONValue {
        var pairs: [(String, JSONValue)] = [
            ("target", .string(r.target.text)),
            ("host", .string(r.target.host)),
            ("port", .int(Int64(r.target.port))),
            ("protocol", .string(r.target.proto.rawValue)),
            ("address", r.address.map { .string($0) } ?? .null),
            ("state", .string(r.state.rawValue)),
            ("healthy", .bool(r.healthy)),
            ("latency_ms", r.latency.map(latency) ?? .null),
            ("loss", .double(r.loss)),
            ("tls", r.tls.map(tls) ?? .null),
            ("expect", r.expect.map { ["matched": .bool($0.matched), "received": .string($0.received)] } ?? .null),
            ("problems", .array(r.problems.map { .string($0) })),
            ("time", .string(rfc3339(r.time.timeIntervalSince1970))),
            ("timestamp", .double(r.time.timeIntervalSince1970)),
        ]
        if let name { pairs.insert(("name", .string(name)), at: 1) }
        return .object(pairs)
    }

    /// `{"probes": [entry, ...]}`.
    public static func document(_ results: [(result: ProbeResult, name: String?)]) -> JSONValue {
        ["probes": .array(results.map { entry($0.result, name: $0.name) })]
    }

    /// `{"min","median","p95","p99","max","stddev"}` in milliseconds.
    static func latency(_ l: LatencySummary) -> JSONValue {
        func ms(_ v: Double) -> JSONValue { .double((v * 1000).rounded() / 1000) }
        return ["min": ms(l.min), "median": ms(l.median), "p95": ms(l.p95), "p99": ms(l.p99), "max": ms(l.max),
                "stddev": ms(l.stddev)]
    }

    static func tls(_ t: TLSReport) -> JSONValue {
        [
            "version": .string(t.version), "cipher": .string(t.cipher), "alpn": t.alpn.map { .string($0) } ?? .null,
            "subject": .string(t.subject), "issuer": .string(t.issuer), "sans": .array(t.sans.map { .string($0) }),
            "not_after": .string(rfc3339(t.notAfter.timeIntervalSince1970)), "days_left": .int(Int64(t.daysLeft)),
            "verified": .bool(t.verified), "verify_error": t.verifyError.map { .string($0) } ?? .null,
        ]
    }

    /// `/api/v1/probes/{target}/history`: `{"target","step_seconds","points":[...]}`.
    public static func history(_ h: ProbeHistory) -> JSONValue {
        [
            "target": .string(h.target), "step_seconds": .double(h.stepSeconds),
            "points": .array(h.points.map(point)),
        ]
    }

    /// A stored point: `{"time","timestamp","probes","healthy","state","latency_ms","loss","tls_days_left"}`.
    /// Raw points are one probe each (`probes` 1, `healthy` true/false, latency min/median/max);
    /// hourly roll-ups count their probes, give `healthy` as the fraction that was healthy and the
    /// mean latency instead of a median.
    static func point(_ p: ProbePoint) -> JSONValue {
        var latency: JSONValue = .null
        if let median = p.latencyMedian, let min = p.latencyMin, let max = p.latencyMax {
            let key = p.probes == 1 ? "median" : "mean"
            latency = .object([("min", .double(min)), (key, .double(median)), ("max", .double(max))])
        }
        return .object([
            ("time", .string(rfc3339(p.time))), ("timestamp", .double(p.time)), ("probes", .int(Int64(p.probes))),
            ("healthy", p.probes == 1 ? .bool(p.healthy == 1) : .double((p.healthy * 1000).rounded() / 1000)),
            ("state", p.state.map { .string($0) } ?? .null), ("latency_ms", latency),
            ("loss", .double((p.loss * 1000).rounded() / 1000)),
            ("tls_days_left", p.daysLeft.map { .int(Int64($0)) } ?? .null),
        ])
    }
}

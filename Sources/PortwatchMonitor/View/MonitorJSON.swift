import PortwatchCore

/// JSON of the monitor's values: one place, used by the HTTP API, the CLI (`history`, `events`)
/// and the alert channels, so every consumer reads the same shapes.
extension PortSample {
    /// A history sample: `{"time","connections","bytes","packets","rates","errors", ...}`.
    public var historyJSON: JSONValue {
        var pairs: [(String, JSONValue)] = [
            ("time", .double(time)),
            ("seconds", .double(windowSeconds)),
            ("listening", .bool(listening)),
            ("connections", connections.json),
            ("accept_queue", acceptQueue.map { .number($0) } ?? .null),
            ("bytes", ["received": .number(bytesReceived), "sent": .number(bytesSent)]),
            ("packets", ["received": .number(packetsReceived), "sent": .number(packetsSent)]),
            ("rates", ratesJSON),
            ("errors", errorsJSON),
            ("connections_opened", .number(connectionsOpened)),
            ("connections_closed", .number(connectionsClosed)),
        ]
        if !owners.isEmpty { pairs.append(("processes", .array(owners.map { .string($0) }))) }
        return .object(pairs)
    }

    /// `{"received_bps","sent_bps","received_pps","sent_pps"}` over the sample's window.
    public var ratesJSON: JSONValue {
        [
            "received_bps": .double(receivedBps.rounded()), "sent_bps": .double(sentBps.rounded()),
            "received_pps": .double((receivedPps * 10).rounded() / 10), "sent_pps": .double((sentPps * 10).rounded() / 10),
        ]
    }

    /// Window error counters by name.
    public var errorsJSON: JSONValue {
        [
            "listen_drops": .number(listenDrops), "drops": .number(drops), "retransmits": .number(retransmits),
            "connect_timeouts": .number(connectTimeouts), "connect_refused": .number(connectRefused),
        ]
    }
}

extension HistorySeries {
    /// `{"protocol","port","step_seconds","samples":[...]}`, with `"netns"` (the namespace's
    /// label) after `port` for a port of another network namespace.
    public var json: JSONValue {
        var pairs: [(String, JSONValue)] = [("protocol", .string(proto.rawValue)), ("port", .number(port))]
        if let namespace { pairs.append(("netns", .string(namespace))) }
        pairs += [("step_seconds", .double(stepSeconds)), ("samples", .array(samples.map(\.historyJSON)))]
        return .object(pairs)
    }
}

extension MonitorEvent {
    /// `{"time","kind","protocol","port","message", ...details}`; time as RFC 3339 UTC and `timestamp` in seconds.
    public var json: JSONValue {
        var pairs: [(String, JSONValue)] = [
            ("time", .string(rfc3339(time))),
            ("timestamp", .double(time)),
            ("kind", .string(kind.rawValue)),
            ("protocol", proto.map { .string($0.rawValue) } ?? .null),
            ("port", port.map { .number($0) } ?? .null),
            ("message", .string(message)),
        ]
        for (k, v) in details.sorted(by: { $0.key < $1.key }) where !pairs.contains(where: { $0.0 == k }) {
            pairs.append((k, kind.isSecurityDetection ? Self.securityDetail(k, v) : .string(v)))
        }
        return .object(pairs)
    }
}

extension Alert {
    /// The alert document (webhook body, exec stdin, `/api/v1/alerts` entries); `"netns"` follows
    /// `port` for an alert about another network namespace (absent for the daemon's own).
    public var json: JSONValue {
        var pairs: [(String, JSONValue)] = [
            ("rule", .string(rule)), ("state", .string(state.rawValue)), ("severity", .string(severity)),
            ("protocol", proto.map { .string($0.rawValue) } ?? .null), ("port", port.map { .number($0) } ?? .null),
            ("metric", .string(metric)), ("value", .double(value)), ("threshold", threshold.map { .double($0) } ?? .null),
            ("since", .string(rfc3339(since))), ("message", .string(message)), ("instance", .string(instance)),
        ]
        if let target { pairs.append(("target", .string(target))) }
        if let namespace { pairs.insert(("netns", .string(namespace)), at: 5) }
        return .object(pairs)
    }
}

/// Seconds since the epoch as RFC 3339 in UTC with milliseconds ("2026-11-25T21:20:34.123Z").
public func rfc3339(_ t: Double) -> String {
    var seconds = Int(t.rounded(.down))
    var millis = Int(((t - Double(seconds)) * 1000).rounded())
    if millis >= 1000 { seconds += 1; millis -= 1000 }
    // Civil date from days since 1970-01-01 (Howard Hinnant's days-to-civil algorithm).
    let days = seconds >= 0 ? seconds / 86400 : (seconds - 86399) / 86400
    let secOfDay = seconds - days * 86400
    let z = days + 719_468
    let era = (z >= 0 ? z : z - 146_096) / 146_097
    let doe = z - era * 146_097
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
    let mp = (5 * doy + 2) / 153
    let d = doy - (153 * mp + 2) / 5 + 1
    let m = mp < 10 ? mp + 3 : mp - 9
    let y = yoe + era * 400 + (m <= 2 ? 1 : 0)
    func pad(_ v: Int, _ n: Int) -> String {
        let s = String(v)
        return s.count >= n ? s : String(repeating: "0", count: n - s.count) + s
    }
    return "\(pad(y, 4))-\(pad(m, 2))-\(pad(d, 2))T\(pad(secOfDay / 3600, 2)):\(pad(secOfDay % 3600 / 60, 2)):"
        + "\(pad(secOfDay % 60, 2)).\(pad(millis, 3))Z"
}

extension MonitorEvent {
    /// A security detection's detail, typed: counts and rates as numbers, `sources` as
    /// `[{"address","count"}]`, `reasons` as a list (the history keeps them as text).
    static func securityDetail(_ key: String, _ value: String) -> JSONValue {
        switch key {
        case "ports_touched", "first_port", "last_port", "count":
            return Int(value).map { .number($0) } ?? .string(value)
        case "rate", "since_timestamp":
            return Double(value).map { .double($0) } ?? .string(value)
        case "sources":
            return .array(value.split(separator: ",").map { item in
                let parts = item.split(separator: "=", maxSplits: 1)
                return .object([("address", .string(String(parts[0]))),
                                ("count", parts.count > 1 ? Int(parts[1]).map { .number($0) } ?? .null : .null)])
            })
        case "reasons":
            return .array(value.split(separator: "; ").map { .string(String($0)) })
        default:
            return .string(value)
        }
    }
}

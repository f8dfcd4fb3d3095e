/// A JSON document with ordered object keys, so output field order is stable and readable.
/// Shared by the CLI and the daemon's API so both speak the same shapes.
public indirect enum JSONValue: Sendable, Equatable {
    case null
    case bool(Bool)
    case int(Int64)
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object([(String, JSONValue)])

    public static func == (a: JSONValue, b: JSONValue) -> Bool {
        switch (a, b) {
        case (.null, .null): return true
        case (.bool(let x), .bool(let y)): return x == y
        case (.int(let x), .int(let y)): return x == y
        case (.double(let x), .double(let y)): return x == y
        case (.string(let x), .string(let y)): return x == y
        case (.array(let x), .array(let y)): return x == y
        case (.object(let x), .object(let y)):
            return x.count == y.count && zip(x, y).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        default: return false
        }
    }

    /// Serializes compactly (pretty: two-space indentation).
    public func serialized(pretty: Bool = false) -> String {
        var out = ""
        out.reserveCapacity(256)
        write(to: &out, pretty: pretty, indent: 0)
        return out
    }

    private func write(to out: inout String, pretty: Bool, indent: Int) {
        switch self {
        case .null: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .int(let i): out += String(i)
        case .double(let d):
            if d.isFinite {
                if d == d.rounded(), abs(d) < 1e15 { out += String(Int64(d)) } else { out += String(d) }
            } else {
                out += "null"
            }
        case .string(let s): JSONValue.escape(s, into: &out)
        case .array(let items):
            if items.isEmpty { out += "[]"; return }
            out += "["
            for (i, item) in items.enumerated() {
                if i > 0 { out += "," }
                if pretty { newline(&out, indent + 1) }
                item.write(to: &out, pretty: pretty, indent: indent + 1)
            }
            if pretty { newline(&out, indent) }
            out += "]"
        case .object(let pairs):
            if pairs.isEmpty { out += "{}"; return }
            out += "{"
            for (i, (key, value)) in pairs.enumerated() {
                if i > 0 { out += "," }
                if pretty { newline(&out, indent + 1) }
                JSONValue.escape(key, into: &out)
                out += pretty ? ": " : ":"
                value.write(to: &out, pretty: pretty, indent: indent + 1)
            }
            if pretty { newline(&out, indent) }
            out += "}"
        }
    }

    private func newline(_ out: inout String, _ indent: Int) {
        out += "\n"
        out += String(repeating: "  ", count: indent)
    }

    static func escape(_ s: String, into out: inout String) {
        out += "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 {
                    let hex = String(scalar.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        out += "\""
    }
}

extension JSONValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByBooleanLiteral,
    ExpressibleByNilLiteral, ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral {
    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int) { self = .int(Int64(value)) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(nilLiteral: ()) { self = .null }
    public init(arrayLiteral elements: JSONValue...) { self = .array(elements) }
    public init(dictionaryLiteral elements: (String, JSONValue)...) { self = .object(elements) }
}

extension JSONValue {
    public static func number<T: BinaryInteger>(_ v: T) -> JSONValue { .int(Int64(clamping: v)) }
    public static func optional(_ s: String?) -> JSONValue { s.map { .string($0) } ?? .null }
}

// MARK: - Shapes shared by every view (PRODUCT.md "JSON shapes")

extension QueueDepth {
    /// `{"current": n, "max": n}` (max null when unknown).
    public var json: JSONValue { ["current": .number(current), "max": max.map { .number($0) } ?? .null] }
}

extension ConnectionCounts {
    public var json: JSONValue {
        [
            "established": .number(established), "syn_recv": .number(synRecv), "syn_sent": .number(synSent),
            "time_wait": .number(timeWait), "close_wait": .number(closeWait), "fin_wait": .number(finWait),
            "other": .number(other), "total": .number(total),
        ]
    }
}

extension ProcessRecord {
    public var json: JSONValue {
        [
            "pid": .number(pid), "name": .string(name), "user": .optional(user), "uid": uid.map { .number($0) } ?? .null,
            "command": .string(command), "unit": .optional(unit), "container": .optional(container),
        ]
    }
}

extension Endpoint {
    public var json: JSONValue { ["address": .string(addressText), "port": .number(port)] }
}

extension PortSummary {
    /// The `PORT` object of `ports --json`.
    public func json(service: String?) -> JSONValue {
        var pairs: [(String, JSONValue)] = [
            ("protocol", .string(proto.rawValue)),
            ("port", .number(port)),
            ("service", .optional(service)),
            ("role", .string(role.rawValue)),
            ("listening", .bool(listening)),
            ("addresses", .array(addresses.map { .string($0) })),
            ("connections", connections.json),
            ("bound_sockets", .number(boundSockets)),
            ("accept_queue", acceptQueue.map(\.json) ?? .null),
            ("bytes", ["received": .number(bytesReceived), "sent": .number(bytesSent)]),
            ("packets", ["received": .number(packetsReceived), "sent": .number(packetsSent)]),
            ("retransmits", .number(retransmits)),
            ("drops", .number(drops &+ listenDrops)),
            ("overloaded", .bool(overloaded)),
            ("errors", errorsJSON),
            ("processes", .array(processes.map(\.json))),
        ]
        if role == .local {
            pairs.append(("listeners", .array(listeners.map { l in
                [
                    "address": .string(l.local.addressText), "port": .number(l.local.port),
                    "v6only": l.v6only.map { .bool($0) } ?? .null,
                    "accept_queue": .number(l.acceptQueue), "backlog": l.backlogKnown ? .number(l.backlog) : .null,
                    "drops": .number(l.drops), "inode": .number(l.inode), "uid": .number(l.uid),
                ]
            })))
        }
        return .object(pairs)
    }
}

extension PortSummary {
    /// Named error counters of a port, as its sockets carry them now (lifetime totals).
    public var errorsJSON: JSONValue {
        // A bound UDP socket's drops are receive-buffer drops, not listen drops.
        let listen: UInt64 = proto == .tcp ? listenDrops : 0
        let other: UInt64 = proto == .tcp ? drops : drops &+ listenDrops
        return [
            "listen_drops": .number(listen), "drops": .number(other), "retransmits": .number(retransmits),
            "syn_backlog": .number(connections.synRecv), "accept_queue_full": .bool(acceptQueueFull),
        ]
    }
}

extension PortActivity {
    /// The `window` object of `--sample` output (`resets_*` only when packets were captured).
    public func windowJSON(seconds: Double, captured: Bool = false) -> JSONValue {
        var errors: [(String, JSONValue)] = [
            ("listen_drops", .number(listenDrops)), ("drops", .number(drops)), ("retransmits", .number(retransmits)),
            ("connect_timeouts", .number(connectTimeouts)), ("connect_refused", .number(connectRefused)),
        ]
        if captured {
            errors.append(("resets_sent", .number(resetsSent)))
            errors.append(("resets_received", .number(resetsReceived)))
        }
        return [
            "seconds": .double(seconds),
            "bytes": ["received": .number(bytesReceived), "sent": .number(bytesSent)],
            "packets": ["received": .number(packetsReceived), "sent": .number(packetsSent)],
            "connections_opened": .number(opened), "connections_closed": .number(closed),
            "errors": .object(errors),
        ]
    }

    /// The `rates` object: bits and packets per second over the window.
    public func ratesJSON(seconds: Double) -> JSONValue {
        let s = seconds > 0 ? seconds : 1
        return [
            "received_bps": .double((Double(bytesReceived) * 8 / s).rounded()),
            "sent_bps": .double((Double(bytesSent) * 8 / s).rounded()),
            "received_pps": .double((Double(packetsReceived) / s * 10).rounded() / 10),
            "sent_pps": .double((Double(packetsSent) / s * 10).rounded() / 10),
        ]
    }
}

extension WindowReport {
    /// System-wide error deltas as a JSON object.
    public var systemJSON: JSONValue { .object(system.map { ($0.0, .int($0.1)) }) }

    /// Closed-port hits (packet capture), busiest first: the raw material of scan detection.
    public var closedPortHitsJSON: JSONValue {
        .array(closedPortHits.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }.map { key, count in
            ["protocol": .string(key.proto.rawValue), "port": .number(key.port),
             "source": .string(key.source.description), "packets": .number(count)]
        })
    }
}

extension SocketRecord {
    /// One entry of `connections --json`.
    public var json: JSONValue {
        var pairs: [(String, JSONValue)] = [
            ("protocol", .string(proto.rawValue)),
            ("state", .string(state.name)),
            ("local", local.json),
            ("peer", peer.json),
            ("bytes", ["received": .number(payloadReceived), "sent": .number(payloadSent)]),
            ("packets", ["received": .number(tcp?.segmentsIn ?? 0), "sent": .number(tcp?.segmentsOut ?? 0)]),
            ("retransmits", .number(tcp?.totalRetransmits ?? 0)),
            ("rtt_ms", tcp.map { .double(Double($0.rttMicros) / 1000) } ?? .null),
            ("receive_queue", .number(receiveQueue)),
            ("send_queue", .number(sendQueue)),
            ("drops", drops.map { .number($0) } ?? .null),
            ("uid", .number(uid)),
            ("inode", .number(inode)),
            ("cookie", .number(cookie)),
        ]
        if let tcp {
            pairs.append(("lost", .number(tcp.lost)))
            pairs.append(("bytes_retransmitted", .number(tcp.bytesRetransmitted)))
        }
        return .object(pairs)
    }
}

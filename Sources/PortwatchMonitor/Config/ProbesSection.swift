import Foundation
import PortwatchCore
import Yams

// `probes:` — remote targets the daemon checks on a schedule of their own.

extension ConfigReader {
    static let probeKeys = ["target", "name", "interval", "timeout", "count", "tls", "sni", "ca", "insecure",
                            "send", "expect", "warn_days", "udp"]
    /// Shortest and longest time between probes of one target: below a second a probe is load, not
    /// a check; above a day it says nothing timely.
    static let probeIntervalRange: (Duration, Duration) = (.seconds(1), .seconds(86_400))
    /// Shortest and longest timeout of one attempt.
    static let probeTimeoutRange: (Duration, Duration) = (.milliseconds(10), .seconds(120))

    mutating func readProbes(_ node: Node) -> [ProbeConfig] {
        guard let items = list(node, "probes") else { return [] }
        var probes: [ProbeConfig] = []
        var targetLines: [String: Int] = [:]
        var nameLines: [String: Int] = [:]
        for (index, item) in items.enumerated() {
            let path = "probes[\(index)]"
            guard let entry = settings(item, path: path, keys: Self.probeKeys) else { continue }
            var ok = true
            func read<T>(_ key: String, _ body: (inout ConfigReader, Node, String) -> T?) -> T? {
                guard let node = entry[key] else { return nil }
                let value = body(&self, node, entry.path(key))
                if value == nil { ok = false }
                return value
            }

            let udp = read("udp") { $0.bool($1, $2) } ?? false
            var target: ProbeTarget?
            if let node = entry["target"] {
                target = probeTarget(node, entry.path("target"), proto: udp ? .udp : .tcp)
                // The target text keys results, history, metric labels and rules: one probe per text.
                if let t = target {
                    if let line = targetLines[t.text] {
                        report(at: node.mark, entry.path("target"), "\(t.text) is already probed at line \(line)")
                    } else {
                        targetLines[t.text] = node.mark?.line ?? 1
                    }
                }
            } else {
                report(at: entry.mark, path, "missing key 'target' (host:port, e.g. \"db.internal:5432\")")
            }
            let name = read("name") { $0.string($1, $2) }
            if let name, let node = entry["name"] {
                if let line = nameLines[name] {
                    report(at: node.mark, entry.path("name"), "duplicate probe name '\(name)' (first at line \(line))")
                } else {
                    nameLines[name] = node.mark?.line ?? 1
                }
            }
            let interval = read("interval") {
                $0.duration($1, $2, minimum: Self.probeIntervalRange.0, maximum: Self.probeIntervalRange.1)
            } ?? ProbeConfig.defaultInterval
            let timeout = read("timeout") {
                $0.duration($1, $2, minimum: Self.probeTimeoutRange.0, maximum: Self.probeTimeoutRange.1)
            }
            if let timeout, let node = entry["timeout"], timeout > interval {
                report(at: node.mark, entry.path("timeout"),
                       "\(formatDuration(timeout)) is longer than the interval (\(formatDuration(interval)))")
                ok = false
            }
            let count = read("count") { $0.integer($1, $2, in: 1...100) }
            let tls = read("tls") { $0.bool($1, $2) } ?? false
            let sni = read("sni") { $0.string($1, $2) }
            let ca = read("ca") { reader, node, path -> String? in
                guard let file = reader.string(node, path) else { return nil }
                let resolved = reader.resolvePath(file)
                guard FileManager.default.isReadableFile(atPath: resolved) else {
                    reader.report(at: node.mark, path, "cannot read the CA file \(resolved)")
                    return nil
                }
                return resolved
            }
            let insecure = read("insecure") { $0.bool($1, $2) }
            let send = read("send") { $0.probePayload($1, $2) }
            let expect = read("expect") { reader, node, path -> String? in
                guard let text = reader.text(node, path, expected: "a regular expression") else { return nil }
                do {
                    _ = try Regex(text)
                } catch {
                    reader.report(at: node.mark, path, "not a valid regular expression: \(error)")
                    return nil
                }
                return text
            }
            let warnDays = read("warn_days") { $0.integer($1, $2, in: 0...3650) }

            // Settings that only mean something with TLS, and what a UDP probe cannot do.
            for key in ["sni", "ca", "insecure", "warn_days"] where !tls {
                if let mark = entry.keyMark(key) {
                    report(at: mark, path, "'\(key)' needs tls: true")
                    ok = false
                }
            }
            if udp {
                for key in ["tls", "expect"] {
                    if let mark = entry.keyMark(key) {
                        report(at: mark, path, "'\(key)' does not apply to a udp probe")
                        ok = false
                    }
                }
            }

            guard ok, let target else { continue }
            var options = ProbeConfig.defaultOptions
            options.timeout = (timeout ?? min(.seconds(5), interval)).alertingSeconds
            options.count = count ?? 1
            options.tls = tls
            options.sni = sni
            options.caFile = ca
            options.insecure = insecure ?? false
            options.send = send
            options.expect = expect
            if let warnDays { options.warnDays = warnDays }
            probes.append(ProbeConfig(target: target, name: name, interval: interval, options: options))
        }
        return probes
    }

    /// `host:port`, `[v6]:port` or `host:service`; the text is kept as written (it keys results).
    private mutating func probeTarget(_ node: Node, _ path: String, proto: TransportProtocol) -> ProbeTarget? {
        guard let text = self.text(node, path, expected: "host:port (e.g. \"db.internal:5432\")") else { return nil }
        let host: String
        let portText: String
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":") else {
                report(at: node.mark, path, "'\(text)': write an IPv6 target as [ADDRESS]:PORT")
                return nil
            }
            host = String(text[text.index(after: text.startIndex)..<close])
            portText = String(text[text.index(close, offsetBy: 2)...])
        } else {
            guard let colon = text.lastIndex(of: ":") else {
                report(at: node.mark, path, "'\(text)' has no port: write host:port (e.g. \"\(text):443\")")
                return nil
            }
            host = String(text[..<colon])
            portText = String(text[text.index(after: colon)...])
            if host.contains(":") {
                report(at: node.mark, path, "'\(text)': write an IPv6 target as [ADDRESS]:PORT")
                return nil
            }
        }
        if host.isEmpty || host.contains(where: { $0.isWhitespace || $0 == "/" }) {
            report(at: node.mark, path, "'\(text)': expected a host name or address before the port")
            return nil
        }
        var port: UInt16?
        if let n = Int(portText) {
            guard (1...65535).contains(n) else {
                report(at: node.mark, path, "port \(n) is out of range (1-65535)")
                return nil
            }
            port = UInt16(n)
        } else if !portText.isEmpty {
            port = ServiceDatabase.system.ports(named: portText, proto: proto).first?.0
        }
        guard let port else {
            report(at: node.mark, path, "'\(portText)' is neither a port number nor a known \(proto.rawValue) service name")
            return nil
        }
        return ProbeTarget(text: text, host: host, port: port, proto: proto)
    }

    /// The bytes of `send:`. In a double-quoted YAML string the escapes are YAML's; in a plain or
    /// single-quoted one `\r`, `\n`, `\t`, `\0` and `\\` are decoded here, as `probe --send` does.
    private mutating func probePayload(_ node: Node, _ path: String) -> [UInt8]? {
        guard let text = self.text(node, path, expected: "text to send") else { return nil }
        guard !text.isEmpty else {
            report(at: node.mark, path, "must not be empty")
            return nil
        }
        if node.scalar?.style == .doubleQuoted { return Array(text.utf8) }
        var out: [UInt8] = []
        var escaping = false
        for byte in text.utf8 {
            if escaping {
                switch byte {
                case UInt8(ascii: "r"): out.append(13)
                case UInt8(ascii: "n"): out.append(10)
                case UInt8(ascii: "t"): out.append(9)
                case UInt8(ascii: "0"): out.append(0)
                case UInt8(ascii: "\\"): out.append(UInt8(ascii: "\\"))
                default:
                    report(at: node.mark, path, "unknown escape '\\\(Character(UnicodeScalar(byte)))' (known: \\r \\n \\t \\0 \\\\)")
                    return nil
                }
                escaping = false
            } else if byte == UInt8(ascii: "\\") {
                escaping = true
            } else {
                out.append(byte)
            }
        }
        if escaping { out.append(UInt8(ascii: "\\")) }
        return out
    }
}

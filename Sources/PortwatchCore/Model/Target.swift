/// A remote host and, when given, a port: what `--host`, `probe` and `scan` talk to.
public struct HostPort: Sendable, Hashable, CustomStringConvertible {
    /// A DNS name (lowercased) or a numeric address in canonical form, without brackets.
    public var host: String
    /// The port, when the text named one.
    public var port: UInt16?

    /// Makes a host/port pair from already validated parts.
    public init(host: String, port: UInt16? = nil) {
        self.host = host
        self.port = port
    }

    /// The longest host or target text accepted; real ones are far below it.
    static let maxLength = 1024

    /// `example.com:443`, `[::1]:80`, or the bare host when there is no port.
    public var description: String {
        guard let port else { return host }
        return host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }

    /// Validates a host given alone (`--host`): a DNS name, an IPv4 literal, or an IPv6 literal with or
    /// without brackets (`[::1]` → `::1`); returns it normalized (lowercase name, canonical address).
    public static func parseHost(_ text: String) throws(PortwatchError) -> String {
        if text.utf8.count > maxLength {
            throw usageError("argument too long: a host of \(text.utf8.count) bytes")
        }
        if text.isEmpty {
            throw usageError("empty host: expected a name, an IPv4 or an IPv6 address")
        }
        if text.hasPrefix("[") {
            guard text.hasSuffix("]"), text.utf8.count >= 2 else {
                throw usageError("malformed host '\(text)': missing ']'")
            }
            let inner = text.dropFirst().dropLast()
            guard let address = canonicalIPv6(inner) else {
                throw usageError("invalid host '\(text)': not an IPv6 address inside the brackets")
            }
            return address
        }
        if text.contains("]") {
            throw usageError("malformed host '\(text)': ']' without '['")
        }
        if text.contains(":") {
            if let address = canonicalIPv6(text[...]) { return address }
            if text.utf8.count(where: { $0 == UInt8(ascii: ":") }) == 1 {
                throw usageError("invalid host '\(text)': give the host without a port")
            }
            throw usageError("invalid host '\(text)': not a valid IPv6 address")
        }
        // All digits and dots can only mean an IPv4 address: a DNS top-level label is never numeric.
        if text.utf8.allSatisfy({ isASCIIDigit($0) || $0 == UInt8(ascii: ".") }) {
            guard let address = IPAddress(text), !address.isV6 else {
                throw usageError("invalid host '\(text)': not a valid IPv4 address")
            }
            return address.description
        }
        try validateDNSName(text)
        return text.lowercased()
    }

    /// Parses a `--host` value: a host alone (`example.com`, `10.0.0.1`, `fd00::2`, `[fd00::2]`,
    /// `fe80::1%eth0`) or a host with a port (`example.com:80`, `[fd99::2]:50070`).
    public static func parseHostOption(_ text: String, services: ServiceDatabase = .system,
                                       proto: TransportProtocol? = nil) throws(PortwatchError) -> HostPort {
        let colons = text.utf8.count(where: { $0 == UInt8(ascii: ":") })
        let bracketedWithPort = text.hasPrefix("[") && !text.hasSuffix("]") && text.contains("]")
        if bracketedWithPort || (!text.hasPrefix("[") && colons == 1) {
            let target = try parseTarget(text, services: services, proto: proto)
            return HostPort(host: target.host, port: target.port)
        }
        return HostPort(host: try parseHost(text))
    }

    /// Parses `host:port`, `[v6]:port`, `host:service` or `1.2.3.4:80`. A service name resolves for
    /// `proto`, or when nil for TCP first and then UDP.
    public static func parseTarget(_ text: String, services: ServiceDatabase = .system,
                                   proto: TransportProtocol? = nil) throws(PortwatchError) -> (host: String, port: UInt16) {
        if text.utf8.count > maxLength {
            throw usageError("argument too long: a target of \(text.utf8.count) bytes")
        }
        if text.isEmpty {
            throw usageError("empty target: expected HOST:PORT, e.g. example.com:443 or [::1]:80")
        }
        let hostPart: Substring
        let portPart: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else {
                throw usageError("malformed target '\(text)': missing ']'")
            }
            hostPart = text[...close]
            let rest = text[text.index(after: close)...]
            if rest.isEmpty {
                throw usageError("missing port in target '\(text)': write \(text):PORT")
            }
            guard rest.first == ":" else {
                throw usageError("malformed target '\(text)': expected ':' and a port after ']'")
            }
            portPart = rest.dropFirst()
        } else {
            let colons = text.utf8.count(where: { $0 == UInt8(ascii: ":") })
            if colons == 0 {
                throw usageError("missing port in target '\(text)': write \(text):PORT")
            }
            guard colons == 1, let colon = text.firstIndex(of: ":") else {
                // `::1:80` is itself a valid IPv6 address: only brackets say where the port starts.
                throw usageError("ambiguous target '\(text)': put an IPv6 address in brackets, e.g. \(bracketSuggestion(text))")
            }
            hostPart = text[..<colon]
            portPart = text[text.index(after: colon)...]
        }
        if hostPart.isEmpty {
            throw usageError("missing host in target '\(text)'")
        }
        if portPart.isEmpty {
            throw usageError("missing port in target '\(text)'")
        }
        let host = try parseHost(String(hostPart))
        return (host, try targetPort(portPart, in: text, services: services, proto: proto))
    }

    // MARK: - Helpers

    /// The port of a target: a number 1-65535 or a service name.
    private static func targetPort(_ text: Substring, in target: String, services: ServiceDatabase,
                                   proto: TransportProtocol?) throws(PortwatchError) -> UInt16 {
        if let first = text.utf8.first, isASCIIDigit(first) || first == UInt8(ascii: "-") || first == UInt8(ascii: "+") {
            guard text.utf8.allSatisfy(isASCIIDigit) else {
                throw usageError("invalid port '\(text)' in target '\(target)': expected a number 1-65535 or a service name")
            }
            return try parsePort(text, in: target[...])
        }
        let name = String(text)
        let found = proto.map { services.ports(named: name, proto: $0) }
            ?? (services.ports(named: name, proto: .tcp) + services.ports(named: name, proto: .udp))
        if let first = found.first { return first.0 }
        guard text.utf8.allSatisfy(isServiceNameByte) else {
            throw usageError("invalid port '\(text)' in target '\(target)': expected a number or a service name")
        }
        throw usageError("unknown service '\(text)' in target '\(target)': not in /etc/services (give the port number instead)")
    }

    /// The canonical text of an IPv6 literal, keeping a zone (`fe80::1%eth0`); nil when not IPv6.
    private static func canonicalIPv6(_ text: Substring) -> String? {
        // inet_pton knows nothing of zones, and a NUL would end its C string early: check first.
        guard text.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7f }) else { return nil }
        var address = text
        var zone: Substring = ""
        if let percent = text.firstIndex(of: "%") {
            address = text[..<percent]
            zone = text[text.index(after: percent)...]
            // Interface names are at most 15 bytes (IFNAMSIZ - 1); numeric zones are indexes.
            guard !zone.isEmpty, zone.utf8.count <= 15,
                  zone.utf8.allSatisfy({ isDNSByte($0) || $0 == UInt8(ascii: ".") })
            else { return nil }
        }
        guard address.contains(":"), let parsed = IPAddress(String(address)), parsed.isV6 else { return nil }
        return zone.isEmpty ? parsed.description : "\(parsed)%\(zone)"
    }

    /// Checks RFC 1123 host name syntax: labels of letters, digits and hyphens, 1-63 bytes, not
    /// starting or ending with a hyphen, 253 bytes in all. Underscores are accepted too, because
    /// resolvers do and container names (`app_db_1`) use them.
    private static func validateDNSName(_ text: String) throws(PortwatchError) {
        // One trailing dot marks a fully qualified name; it is not an empty label.
        let name = text.hasSuffix(".") ? text.dropLast() : text[...]
        if name.utf8.count > 253 {
            throw usageError("invalid host '\(text)': longer than 253 characters")
        }
        for label in name.split(separator: ".", omittingEmptySubsequences: false) {
            if label.isEmpty {
                throw usageError("invalid host '\(text)': empty label (two dots in a row, or a leading dot)")
            }
            if label.utf8.count > 63 {
                throw usageError("invalid host '\(text)': label '\(label.prefix(16))...' is longer than 63 characters")
            }
            if let bad = label.first(where: { !($0.isASCII && isDNSByte($0.asciiValue ?? 0)) }) {
                let hint = bad.isASCII ? "" : " (write internationalized names in punycode, xn--...)"
                throw usageError("invalid host '\(text)': unexpected character '\(bad)'\(hint)")
            }
            if label.hasPrefix("-") || label.hasSuffix("-") {
                throw usageError("invalid host '\(text)': label '\(label)' starts or ends with a hyphen")
            }
        }
    }

    /// `[2001:db8::1]:443` made from an unbracketed `2001:db8::1:443`, when that reading is valid.
    private static func bracketSuggestion(_ text: String) -> String {
        if let colon = text.lastIndex(of: ":"), canonicalIPv6(text[..<colon]) != nil {
            let port = text[text.index(after: colon)...]
            if !port.isEmpty && port.utf8.allSatisfy(isASCIIDigit) {
                return "[\(text[..<colon])]:\(port)"
            }
        }
        return "[2001:db8::1]:443"
    }
}

/// Letters, digits, hyphen and underscore: the bytes of a host-name label.
private func isDNSByte(_ byte: UInt8) -> Bool {
    switch byte {
    case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
         UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "_"):
        return true
    default:
        return false
    }
}

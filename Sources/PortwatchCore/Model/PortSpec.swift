/// The ports a command is asked about, as the user typed them: `8080`, `8000-8100`, `22,80,443`,
/// `ssh`, `8080/udp`, `53/tcp`, or any comma-separated mix.
///
/// An item without a `/tcp` or `/udp` suffix applies to both protocols; which protocols a command
/// then looks at is its choice, through `protocols(default:)`. A service name without a suffix
/// stands for the ports the name has for each protocol it is listed under (`domain` is 53/tcp and
/// 53/udp, `ntp` only 123/udp), so those items carry the protocol explicitly.
public struct PortSpec: Sendable, Hashable {
    /// One comma-separated item: an inclusive port range and the protocol it was limited to.
    public struct Item: Sendable, Hashable {
        /// The ports, inclusive; a single port is `p...p`.
        public var range: ClosedRange<UInt16>
        /// The protocol from a suffix or a service's listing; nil means either protocol.
        public var proto: TransportProtocol?
        /// True when `proto` came from a service name's listing rather than a typed suffix
        /// (`ssh` is listed for TCP only, but `ssh --udp` still means port 22).
        public var protocolFromService: Bool

        /// Makes an item from a range and an optional protocol.
        public init(range: ClosedRange<UInt16>, proto: TransportProtocol? = nil, protocolFromService: Bool = false) {
            self.range = range
            self.proto = proto
            self.protocolFromService = protocolFromService
        }
    }

    /// The longest argument accepted, so a pasted blob is refused instead of parsed.
    public static let maxLength = 4096
    /// The most comma-separated items accepted.
    public static let maxItems = 10_000

    /// The items in the order given (a service name may have produced one per protocol).
    public var items: [Item] {
        // The lookup tables are derived from the items; keep them in step when a caller edits.
        didSet { computeRanges() }
    }
    /// The original text.
    public let text: String

    // Precomputed at parse time so `contains` is a binary search and not a walk over the items.
    private var tcpRanges: [ClosedRange<UInt16>] = []
    private var udpRanges: [ClosedRange<UInt16>] = []
    private var allRanges: [ClosedRange<UInt16>] = []

    /// Parses a port list; errors are `.usage` and name the offending item.
    public init(parsing text: String, services: ServiceDatabase = .system) throws(PortwatchError) {
        try self.init(parsing: text, services: services, maxLength: Self.maxLength, maxItems: Self.maxItems)
    }

    /// Parses with explicit limits, so tests can reach the item limit within the length limit.
    init(parsing text: String, services: ServiceDatabase, maxLength: Int, maxItems: Int) throws(PortwatchError) {
        if text.utf8.count > maxLength {
            throw usageError("argument too long: a port list of \(text.utf8.count) bytes, the limit is \(maxLength)")
        }
        let trimmed = trimSpaces(text[...])
        if trimmed.isEmpty {
            throw usageError("empty port list '\(text)': expected a port, a range A-B or a service name")
        }
        let rawItems = trimmed.split(separator: ",", omittingEmptySubsequences: false)
        if rawItems.count > maxItems {
            throw usageError("too many items in port list: \(rawItems.count), the limit is \(maxItems)")
        }
        var items: [Item] = []
        items.reserveCapacity(rawItems.count)
        for raw in rawItems {
            let item = trimSpaces(raw)
            if item.isEmpty {
                throw usageError("empty item in port list '\(text)': remove the extra comma")
            }
            try items.append(contentsOf: Self.parseItem(item, services: services))
        }
        self.init(items: items, text: text)
    }

    /// Makes a spec from items directly (for code that builds one, e.g. from a config file).
    public init(items: [Item], text: String? = nil) {
        self.items = items
        self.text = text ?? items.map(Self.itemText).joined(separator: ",")
        computeRanges()
    }

    private mutating func computeRanges() {
        tcpRanges = mergeRanges(items.filter { $0.proto != .udp }.map(\.range))
        udpRanges = mergeRanges(items.filter { $0.proto != .tcp }.map(\.range))
        allRanges = mergeRanges(items.map(\.range))
    }

    /// True when the spec includes this port for this protocol (a binary search).
    public func contains(port: UInt16, proto: TransportProtocol) -> Bool {
        let ranges = proto == .tcp ? tcpRanges : udpRanges
        // Find the first range starting after `port`; only the one before it can contain `port`.
        var low = 0
        var high = ranges.count
        while low < high {
            let mid = (low + high) / 2
            if ranges[mid].lowerBound <= port { low = mid + 1 } else { high = mid }
        }
        return low > 0 && ranges[low - 1].upperBound >= port
    }

    /// The ports for one protocol as merged, sorted, non-overlapping ranges.
    public func ranges(for proto: TransportProtocol) -> [ClosedRange<UInt16>] {
        proto == .tcp ? tcpRanges : udpRanges
    }

    /// The protocols to look at: those the items name, plus `default` for items that name none.
    public func protocols(default defaultProtocols: Set<TransportProtocol>) -> Set<TransportProtocol> {
        var result: Set<TransportProtocol> = []
        for item in items {
            if let proto = item.proto { result.insert(proto) } else { result.formUnion(defaultProtocols) }
        }
        return result
    }

    /// The spec as read by a command given `--tcp`/`--udp` (`flags`): items typed with another
    /// protocol's suffix drop out; service names take the flags' protocols even where
    /// `/etc/services` lists them for another (`ssh --udp` is udp/22). Throws when nothing is left
    /// (`53/udp --tcp`).
    public func restricted(to flags: Set<TransportProtocol>) throws(PortwatchError) -> PortSpec {
        var kept: [Item] = []
        for item in items {
            guard let proto = item.proto else { kept.append(item); continue }
            if flags.contains(proto) {
                kept.append(item)
            } else if item.protocolFromService {
                for p in TransportProtocol.allCases where flags.contains(p) {
                    kept.append(Item(range: item.range, proto: p, protocolFromService: true))
                }
            }
        }
        if kept.isEmpty {
            let asked = TransportProtocol.allCases.filter { flags.contains($0) }.map { "--\($0.rawValue)" }.joined(separator: " ")
            throw usageError("'\(text)' names no \(asked.replacing("--", with: "").uppercased()) port, but \(asked) asks for those only")
        }
        var seen = Set<Item>()
        return PortSpec(items: kept.filter { seen.insert($0).inserted }, text: text)
    }

    /// How many distinct port numbers the spec covers, whatever the protocol.
    public var portCount: Int {
        allRanges.reduce(0) { $0 + $1.count }
    }

    /// Every port for one protocol, ascending (up to 65535 values for `1-65535`).
    public func ports(for proto: TransportProtocol) -> [UInt16] {
        ranges(for: proto).flatMap { Array($0) }
    }

    /// True when the spec names exactly one port number (`53`, `53/udp`, or `domain` on both protocols).
    public var isSinglePort: Bool { portCount == 1 }

    // MARK: - Parsing

    private static func parseItem(_ item: Substring, services: ServiceDatabase) throws(PortwatchError) -> [Item] {
        var body = item
        var proto: TransportProtocol?
        if let slash = item.firstIndex(of: "/") {
            body = item[..<slash]
            let suffix = item[item.index(after: slash)...]
            if suffix.isEmpty {
                throw usageError("missing protocol after '/' in '\(item)': expected tcp or udp")
            }
            guard let p = TransportProtocol(rawValue: suffix.lowercased()) else {
                throw usageError("unknown protocol '\(suffix)' in '\(item)': expected tcp or udp")
            }
            proto = p
            if body.isEmpty {
                throw usageError("missing port before '/\(suffix)' in '\(item)'")
            }
        }

        if body.utf8.allSatisfy(isASCIIDigit) {
            let port = try parsePort(body, in: item)
            return [Item(range: port...port, proto: proto)]
        }
        if body.contains("-") && body.utf8.allSatisfy({ isASCIIDigit($0) || $0 == UInt8(ascii: "-") }) {
            return [Item(range: try parseRange(body, in: item), proto: proto)]
        }
        return try resolveService(body, proto: proto, in: item, services: services)
    }

    /// Parses `A-B` made only of digits and dashes.
    private static func parseRange(_ body: Substring, in item: Substring) throws(PortwatchError) -> ClosedRange<UInt16> {
        let ends = body.split(separator: "-", omittingEmptySubsequences: false)
        guard ends.count == 2 else {
            throw usageError("invalid port range '\(item)': expected two ports A-B")
        }
        if ends[0].isEmpty && ends[1].isEmpty {
            throw usageError("invalid port range '\(item)': missing both ports (A-B)")
        }
        if ends[0].isEmpty {
            // `-80` is either a negative port or nmap's open-ended range; neither is accepted.
            throw usageError("invalid port '\(item)': ports cannot be negative, and a range needs both ends (A-B)")
        }
        if ends[1].isEmpty {
            throw usageError("invalid port range '\(item)': missing the end port (A-B)")
        }
        let low = try parsePort(ends[0], in: item)
        let high = try parsePort(ends[1], in: item)
        if low > high {
            throw usageError("invalid port range '\(item)': start \(low) is greater than end \(high)")
        }
        return low...high
    }

    /// Resolves a service name, or explains why the item is neither a number nor a known name.
    private static func resolveService(_ name: Substring, proto: TransportProtocol?, in item: Substring,
                                       services: ServiceDatabase) throws(PortwatchError) -> [Item] {
        let found = services.ports(named: String(name), proto: proto)
        if !found.isEmpty {
            return found.map { Item(range: $0.0...$0.0, proto: $0.1, protocolFromService: proto == nil) }
        }
        if let first = name.utf8.first, isASCIIDigit(first) {
            throw usageError("invalid port '\(item)': not a number (expected 1-65535, a range A-B or a service name)")
        }
        if !name.utf8.allSatisfy(isServiceNameByte) {
            throw usageError("invalid port '\(item)': expected a number, a range A-B or a service name")
        }
        if let proto, !services.ports(named: String(name), proto: nil).isEmpty {
            throw usageError("unknown service '\(item)': '\(name)' is not listed for \(proto.rawValue)")
        }
        throw usageError("unknown service '\(item)': not in /etc/services (give the port number instead)")
    }

    /// The `/etc/services` form of an item, for specs built from items.
    private static func itemText(_ item: Item) -> String {
        let ports = item.range.lowerBound == item.range.upperBound
            ? "\(item.range.lowerBound)" : "\(item.range.lowerBound)-\(item.range.upperBound)"
        return item.proto.map { "\(ports)/\($0.rawValue)" } ?? ports
    }
}

/// Parses a port number of ASCII digits, 1-65535, for the item `item` (named in errors).
func parsePort(_ digits: Substring, in item: Substring) throws(PortwatchError) -> UInt16 {
    // More than 5 digits is out of range however it starts; checking the length first also keeps
    // the accumulation below from overflowing on absurd inputs.
    guard !digits.isEmpty, digits.utf8.count <= 5, digits.utf8.allSatisfy(isASCIIDigit) else {
        if !digits.isEmpty && digits.utf8.allSatisfy(isASCIIDigit) {
            throw usageError(portRangeMessage(digits, item))
        }
        throw usageError("invalid port '\(item)': not a number")
    }
    var value = 0
    for byte in digits.utf8 { value = value * 10 + Int(byte - UInt8(ascii: "0")) }
    if value == 0 {
        throw usageError("invalid port '\(item)': port 0 is not a real port (must be 1-65535)")
    }
    if value > 65535 { throw usageError(portRangeMessage(digits, item)) }
    return UInt16(value)
}

private func portRangeMessage(_ digits: Substring, _ item: Substring) -> String {
    digits == item ? "invalid port '\(item)': must be 1-65535"
        : "invalid port '\(digits)' in '\(item)': must be 1-65535"
}

/// Merges ranges into sorted, non-overlapping ones; adjacent ranges (1-5, 6-9) become one.
func mergeRanges(_ ranges: [ClosedRange<UInt16>]) -> [ClosedRange<UInt16>] {
    let sorted = ranges.sorted { $0.lowerBound < $1.lowerBound }
    var merged: [ClosedRange<UInt16>] = []
    for range in sorted {
        if let last = merged.last, Int(range.lowerBound) <= Int(last.upperBound) + 1 {
            merged[merged.count - 1] = last.lowerBound...max(last.upperBound, range.upperBound)
        } else {
            merged.append(range)
        }
    }
    return merged
}

@inline(__always)
func isASCIIDigit(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }

/// Bytes seen in service names across distributions' `/etc/services` (`http-alt`, `kerberos_master`, `z39.50`).
func isServiceNameByte(_ byte: UInt8) -> Bool {
    switch byte {
    case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
         UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "_"),
         UInt8(ascii: "."), UInt8(ascii: "+"):
        return true
    default:
        return false
    }
}

/// Drops leading and trailing spaces and tabs (users write `22, 80` in quotes and config files).
func trimSpaces(_ text: Substring) -> Substring {
    let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r\n" || $0 == "\r" }
    guard let start = text.firstIndex(where: { !isSpace($0) }),
          let end = text.lastIndex(where: { !isSpace($0) }) else { return text[text.endIndex...] }
    return text[start...end]
}

/// A `.usage` error kept on one line: control characters quoted from the input become `?`.
func usageError(_ message: String) -> PortwatchError {
    var clean = String.UnicodeScalarView()
    for scalar in message.unicodeScalars {
        switch scalar.properties.generalCategory {
        case .control, .lineSeparator, .paragraphSeparator: clean.append("?")
        default: clean.append(scalar)
        }
    }
    return .usage(String(clean))
}

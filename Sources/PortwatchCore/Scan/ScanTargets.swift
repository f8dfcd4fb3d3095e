/// One host to scan: the target as the user wrote it, and the address the probes go to.
public struct ScanTarget: Sendable, Hashable {
    /// A name, a literal, or (for a CIDR block) the address itself.
    public var host: String
    public var address: RemoteAddress

    public init(host: String, address: RemoteAddress) {
        self.host = host
        self.address = address
    }
}

/// The most addresses one scan takes (a /16 of IPv4); a larger block is almost always a typo.
public let maxScanAddresses = 65_536

/// A CIDR block `10.0.0.0/29` or `fd00::/120` parsed to its first address and size; nil when
/// the text has no `/`.
public struct AddressBlock: Sendable, Hashable {
    /// The first address (host bits cleared, as nmap does).
    public var base: IPAddress
    public var prefix: Int

    /// Parses `ADDRESS/PREFIX`; throws for a bad address or prefix.
    public init(parsing text: String) throws(PortwatchError) {
        guard let slash = text.firstIndex(of: "/") else { throw usageError("invalid CIDR block '\(text)': expected ADDRESS/PREFIX") }
        let addressText = String(text[..<slash])
        let prefixText = text[text.index(after: slash)...]
        guard let ip = IPAddress(addressText) else {
            throw usageError("invalid CIDR block '\(text)': '\(addressText)' is not an IPv4 or IPv6 address")
        }
        let width = ip.isV6 ? 128 : 32
        guard !prefixText.isEmpty, prefixText.utf8.count <= 3, prefixText.utf8.allSatisfy(isASCIIDigit),
              let prefix = Int(prefixText), prefix <= width else {
            throw usageError("invalid CIDR block '\(text)': the prefix must be 0-\(width)")
        }
        self.prefix = prefix
        switch ip {
        case .v4(let a):
            let mask: UInt32 = prefix == 0 ? 0 : ~UInt32(0) << UInt32(32 - prefix)
            base = .v4(a & mask)
        case .v6(let h, let l):
            let highMask: UInt64 = prefix >= 64 ? ~0 : (prefix == 0 ? 0 : ~UInt64(0) << UInt64(64 - prefix))
            let lowMask: UInt64 = prefix <= 64 ? 0 : (prefix == 128 ? ~0 : ~UInt64(0) << UInt64(128 - prefix))
            base = .v6(h & highMask, l & lowMask)
        }
    }

    /// How many addresses the block holds, saturating at Int.max.
    public var count: Int {
        let bits = (base.isV6 ? 128 : 32) - prefix
        return bits >= 62 ? Int.max : 1 << bits
    }

    /// Every address of the block, in order (call only when `count` is small).
    public var addresses: [IPAddress] {
        let n = count
        var out: [IPAddress] = []
        out.reserveCapacity(n)
        switch base {
        case .v4(let a):
            for i in 0..<n { out.append(.v4(a &+ UInt32(i))) }
        case .v6(let h, let l):
            for i in 0..<n { out.append(.v6(h, l &+ UInt64(i))) }
        }
        return out
    }
}

/// Turns `scan`'s TARGETS into hosts: names (resolved; the first address is scanned, as nmap
/// does), IPv4 and IPv6 literals (`fe80::1%eth0` with its zone), and CIDR blocks. Refuses more
/// than `maxScanAddresses` addresses in all, before resolving anything.
public func scanTargets(_ texts: [String], resolveTimeout: Double = 5) throws(PortwatchError) -> [ScanTarget] {
    if texts.isEmpty { throw usageError("missing targets: give a host, an address or a CIDR block (e.g. 10.0.0.0/29)") }
    var blocks: [Int: AddressBlock] = [:]
    var total = 0
    for (i, text) in texts.enumerated() where text.contains("/") {
        let block = try AddressBlock(parsing: text)
        blocks[i] = block
        total = total > maxScanAddresses ? total : total + min(block.count, maxScanAddresses + 1)
        if total > maxScanAddresses {
            throw usageError("too many addresses: '\(text)' brings the scan to more than \(maxScanAddresses) (a /16 of IPv4); split the scan")
        }
    }
    total += texts.count - blocks.count
    if total > maxScanAddresses { throw usageError("too many targets: more than \(maxScanAddresses) addresses") }
    var targets: [ScanTarget] = []
    var seen = Set<RemoteAddress>()
    for (i, text) in texts.enumerated() {
        if let block = blocks[i] {
            for ip in block.addresses {
                let address = RemoteAddress(ip)
                if seen.insert(address).inserted { targets.append(ScanTarget(host: ip.description, address: address)) }
            }
            continue
        }
        let host = try HostPort.parseHost(text)
        guard let first = try resolveHost(host, timeout: resolveTimeout).first else {
            throw usageError("cannot resolve host '\(text)': no address")
        }
        if seen.insert(first).inserted { targets.append(ScanTarget(host: host, address: first)) }
    }
    return targets
}

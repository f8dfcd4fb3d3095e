/// What a scan is asked to do: the flags of `portwatch scan`.
public struct ScanOptions: Sendable, Hashable {
    /// UDP instead of TCP.
    public var udp = false
    /// The most seconds one probe waits for an answer; the adaptive timeout stays below it.
    public var maxTimeout: Double = 1
    /// Probes started per second at most; nil means no limit.
    public var rate: Double?
    /// Probes in flight at once at most.
    public var concurrency: Int = ScanOptions.localConcurrency
    /// Read what an open TCP port says first (SSH, SMTP, FTP greet before any request).
    public var banners = false
    /// How long to wait for a banner after the connection is made.
    public var bannerWait: Double = 0.5
    /// Attempts for a port that stays silent when the host shows no sign of losing answers
    /// (nmap's "filtered ports retried once").
    public var silentAttempts = 2
    /// Attempts for a silent UDP port once the host is seen rate-limiting its ICMP errors.
    public var rateLimitedAttempts = 10
    /// A readable descriptor (a signalfd for SIGINT) that stops the scan early; the results so far are kept.
    public var cancelFD: Int32?

    /// Defaults for a host that is not this machine: at most this many probes in flight...
    public static let politeConcurrency = 200
    /// ...and this many started per second (nmap -T3 sends about as many to a host that answers).
    public static let politeRate: Double = 4000
    /// Loopback and this host's own addresses: as fast as the kernel goes, within the open-file limit.
    public static let localConcurrency = 4096

    public init() {}
}

/// One port's answer in a scan.
public struct ScanPortResult: Sendable, Hashable {
    public var proto: TransportProtocol
    public var port: UInt16
    /// open, closed, filtered or open|filtered (never unreachable: a scan says filtered, as nmap does).
    public var state: RemoteState
    /// The service name from /etc/services.
    public var service: String?
    /// Seconds from the deciding probe's start to its answer; nil when nothing answered.
    public var rtt: Double?
    /// The first line the service sent (with `--banners`), printable ASCII only.
    public var banner: String?
    /// Why, for a port that was decided by an error (`refused`, `icmp admin-prohibited`, `no answer`).
    public var reason: String
    /// Probes sent to the port (retries included).
    public var attempts: Int

    public init(proto: TransportProtocol, port: UInt16, state: RemoteState, service: String? = nil, rtt: Double? = nil,
                banner: String? = nil, reason: String, attempts: Int) {
        self.proto = proto
        self.port = port
        self.state = state
        self.service = service
        self.rtt = rtt
        self.banner = banner
        self.reason = reason
        self.attempts = attempts
    }
}

/// Counts per state, in the JSON's order.
public struct ScanCounts: Sendable, Hashable {
    public var open = 0
    public var closed = 0
    public var filtered = 0
    public var openFiltered = 0

    public init() {}

    /// Adds one port of `state` (unreachable counts as filtered).
    public mutating func add(_ state: RemoteState) {
        switch state {
        case .open: open += 1
        case .closed: closed += 1
        case .filtered, .unreachable: filtered += 1
        case .openFiltered: openFiltered += 1
        }
    }

    public var total: Int { open + closed + filtered + openFiltered }
}

/// The scan of one host.
public struct ScanHostResult: Sendable, Hashable {
    /// The target as given (a name, a literal, or an address out of a CIDR block).
    public var host: String
    public var address: RemoteAddress
    /// Every port that was decided, ascending (closed ones included; views choose what to show).
    public var ports: [ScanPortResult]
    public var counts: ScanCounts
    /// Seconds from the host's first probe to its last answer.
    public var seconds: Double
    /// The smoothed round-trip time measured to the host, when anything answered.
    public var smoothedRTT: Double?
    /// True when the host was seen rate-limiting its ICMP errors (UDP; the scan slowed down to match).
    public var icmpRateLimited: Bool

    public init(host: String, address: RemoteAddress, ports: [ScanPortResult], seconds: Double,
                smoothedRTT: Double? = nil, icmpRateLimited: Bool = false) {
        self.host = host
        self.address = address
        self.ports = ports
        self.seconds = seconds
        self.smoothedRTT = smoothedRTT
        self.icmpRateLimited = icmpRateLimited
        var counts = ScanCounts()
        for p in ports { counts.add(p.state) }
        self.counts = counts
    }
}

/// A whole scan: every host, and whether it ran to the end.
public struct ScanReport: Sendable, Hashable {
    public var hosts: [ScanHostResult]
    /// False when the scan was stopped (Ctrl-C) before every port was decided; undecided ports are left out.
    public var complete: Bool
    public var seconds: Double

    public init(hosts: [ScanHostResult], complete: Bool, seconds: Double) {
        self.hosts = hosts
        self.complete = complete
        self.seconds = seconds
    }

    /// True when any port of any host is open (the scan's exit 0).
    public var anyOpen: Bool { hosts.contains { $0.counts.open > 0 } }
}

/// How far a scan has come, for a progress bar.
public struct ScanProgress: Sendable, Hashable {
    /// Ports decided so far.
    public var done: Int
    /// Ports to decide in all.
    public var total: Int
    public var elapsed: Double
    /// Open ports found so far.
    public var open: Int

    public init(done: Int, total: Int, elapsed: Double, open: Int) {
        self.done = done
        self.total = total
        self.elapsed = elapsed
        self.open = open
    }

    /// Seconds left at the pace so far; nil before anything is decided.
    public var eta: Double? {
        guard done > 0, elapsed > 0 else { return nil }
        return elapsed / Double(done) * Double(total - done)
    }
}

/// Which ports a scan's output lists.
public enum ScanListing: Sendable, Hashable {
    /// Every port that is not closed (open, filtered, open|filtered), as nmap shows them.
    case notClosed
    /// Only open ports (`--open`).
    case open
    /// Every port scanned (`--show-closed`).
    case all

    /// The rows to show for one host, ascending by port.
    public func rows(_ host: ScanHostResult) -> [ScanPortResult] {
        switch self {
        case .notClosed: return host.ports.filter { $0.state != .closed }
        case .open: return host.ports.filter { $0.state == .open }
        case .all: return host.ports
        }
    }
}

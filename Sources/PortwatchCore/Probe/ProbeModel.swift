import Foundation

/// What to probe: one `host:port` as the user wrote it.
public struct ProbeTarget: Sendable, Hashable {
    /// The target as written (`db.example:5432`, `[fd00::2]:443`, `localhost:ssh`): the key of
    /// results, history rows and metric labels.
    public var text: String
    public var host: String
    public var port: UInt16
    public var proto: TransportProtocol

    public init(text: String, host: String, port: UInt16, proto: TransportProtocol = .tcp) {
        self.text = text
        self.host = host
        self.port = port
        self.proto = proto
    }
}

/// How to probe: the flags of `portwatch probe` and the keys of the daemon's `probes:` entries.
public struct ProbeOptions: Sendable, Hashable {
    /// Connection attempts per target (latency statistics are over these).
    public var count: Int = 1
    /// Seconds between attempts.
    public var interval: Double = 1
    /// Seconds each attempt (resolution, connect, handshake, send/expect) may take.
    public var timeout: Double = 5
    public var tls: Bool = false
    /// Server name for SNI and verification; the host when nil.
    public var sni: String?
    /// PEM file of trusted roots instead of the system's.
    public var caFile: String?
    /// Handshake even when verification fails (the result still says why it failed).
    public var insecure: Bool = false
    /// Bytes to send once connected (escapes already decoded).
    public var send: [UInt8]?
    /// A regular expression the first bytes received must match.
    public var expect: String?
    /// A certificate expiring within this many days makes the target unhealthy.
    public var warnDays: Int = 14
    /// Within this many days the nagios status is CRITICAL rather than WARNING.
    public var criticalDays: Int = 7
    /// Protocols offered by ALPN in a TLS handshake.
    public var alpn: [String] = ["h2", "http/1.1"]

    public init() {}
}

/// Connect latency over the attempts of one probe, in milliseconds.
public struct LatencySummary: Sendable, Hashable {
    public var min: Double
    public var median: Double
    public var p95: Double
    public var p99: Double
    public var max: Double
    public var stddev: Double
    /// The arithmetic mean (what nping reports as "Avg rtt").
    public var mean: Double = 0

    public init(min: Double, median: Double, p95: Double, p99: Double, max: Double, stddev: Double) {
        self.min = min
        self.median = median
        self.p95 = p95
        self.p99 = p99
        self.max = max
        self.stddev = stddev
    }
}

/// What the TLS handshake and the server's certificate showed.
public struct TLSReport: Sendable, Hashable {
    public var version: String
    public var cipher: String
    public var alpn: String?
    public var subject: String
    public var issuer: String
    public var sans: [String]
    public var notAfter: Date
    /// Whole days from now until `notAfter` (negative once expired).
    public var daysLeft: Int
    public var verified: Bool
    /// Why verification failed (`certificate has expired`, `hostname mismatch`, ...), nil when verified.
    public var verifyError: String?
    /// Milliseconds the handshake took.
    public var handshakeMs: Double

    public init(version: String, cipher: String, alpn: String?, subject: String, issuer: String,
                sans: [String], notAfter: Date, daysLeft: Int, verified: Bool, verifyError: String?,
                handshakeMs: Double) {
        self.version = version
        self.cipher = cipher
        self.alpn = alpn
        self.subject = subject
        self.issuer = issuer
        self.sans = sans
        self.notAfter = notAfter
        self.daysLeft = daysLeft
        self.verified = verified
        self.verifyError = verifyError
        self.handshakeMs = handshakeMs
    }
}

/// The outcome of `--send`/`--expect`.
public struct ExpectReport: Sendable, Hashable {
    public var matched: Bool
    /// The first line received (control characters escaped), empty when nothing came.
    public var received: String

    public init(matched: Bool, received: String) {
        self.matched = matched
        self.received = received
    }
}

/// One target's probe result: the `probe --json` entry, a daemon probe sample.
public struct ProbeResult: Sendable, Hashable {
    public var target: ProbeTarget
    /// The address that answered (or the last one tried), as text; nil when the name did not resolve.
    public var address: String?
    /// Every resolved address with its own answer.
    public var attempts: [ConnectResult]
    public var state: RemoteState
    /// Open, verified (when TLS was asked), expectation met, certificate not within the warning days.
    public var healthy: Bool
    /// Nil when no attempt connected.
    public var latency: LatencySummary?
    /// Fraction of attempts that did not connect (0...1).
    public var loss: Double
    public var tls: TLSReport?
    public var expect: ExpectReport?
    /// Why the target is unhealthy, in words, one entry per reason.
    public var problems: [String]
    public var time: Date
    /// Connection attempts made (`--count`); `loss` is over these.
    public var count: Int = 1

    public init(target: ProbeTarget, address: String?, attempts: [ConnectResult], state: RemoteState,
                healthy: Bool, latency: LatencySummary?, loss: Double, tls: TLSReport?,
                expect: ExpectReport?, problems: [String], time: Date) {
        self.target = target
        self.address = address
        self.attempts = attempts
        self.state = state
        self.healthy = healthy
        self.latency = latency
        self.loss = loss
        self.tls = tls
        self.expect = expect
        self.problems = problems
        self.time = time
    }
}

/// Something that probes targets: the CLI's `probe` and the daemon's probe service call it.
public protocol Prober: Sendable {
    func probe(_ target: ProbeTarget, options: ProbeOptions) async -> ProbeResult
}

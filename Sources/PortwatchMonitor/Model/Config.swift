import PortwatchCore

/// The daemon's configuration, as parsed from YAML (`ConfigLoader`) or taken from the embedded
/// defaults. Names follow the YAML keys of PRODUCT.md.
public struct MonitorConfig: Sendable, Hashable {
    /// Time between samples.
    public var interval: Duration = .seconds(5)
    /// HTTP listen address, e.g. 127.0.0.1:9910 or [::1]:9910.
    public var listen = ListenAddress(host: "127.0.0.1", port: 9910)
    /// Bearer token file; required when `listen` is not a loopback address.
    public var tokenFile: String? = nil
    public var database = DatabaseConfig()
    /// Names and expectations for some ports (all ports are watched anyway).
    public var ports: [PortExpectation] = []
    public var rules: [RuleConfig] = []
    /// Remote targets checked on their own schedule (`probes:`).
    public var probes: [ProbeConfig] = []
    public var detectors = DetectorConfig()
    public var channels: [ChannelConfig] = [.log]
    /// AF_PACKET capture (UDP traffic per port, closed-port hits); needs CAP_NET_RAW.
    public var capture = false
    /// Other network namespaces to watch (`namespaces: all` or a list of names); nil: only ours.
    public var namespaces: NamespaceSelection? = nil
    public var metrics = MetricsConfig()
    /// `instance` label of alerts; defaults to the host name.
    public var instance: String? = nil

    public init() {}
}

/// `host:port` the HTTP server binds.
public struct ListenAddress: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: UInt16

    public init(host: String, port: UInt16) {
        self.host = host
        self.port = port
    }

    /// Whether the address is loopback only (no token needed).
    public var isLoopback: Bool {
        host == "localhost" || host == "::1" || host.hasPrefix("127.")
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

public struct DatabaseConfig: Sendable, Hashable {
    /// nil: `$XDG_STATE_HOME/portwatch/history.sqlite`, or `/var/lib/portwatch/history.sqlite` as root.
    public var path: String? = nil
    public var retention = Retention()
    /// Size cap of the database file in bytes (500 MB by default).
    public var maxSize: UInt64 = 500_000_000

    public init() {}
}

/// How long each resolution of history is kept.
public struct Retention: Sendable, Hashable {
    public var raw: Duration = .seconds(6 * 3600)
    public var minute: Duration = .seconds(7 * 86400)
    public var hour: Duration = .seconds(90 * 86400)

    public init() {}
}

/// A configured port: a name and what is expected of it.
public struct PortExpectation: Sendable, Hashable {
    public var proto: TransportProtocol = .tcp
    public var port: UInt16
    public var name: String? = nil
    public var expect: ExpectedState? = nil
    /// An alert-worthy ceiling on the row's total connections.
    public var maxConnections: Int? = nil
    /// The network namespace (`NetworkNamespace.daemonLabel`) whose port this is (`netns:`);
    /// nil for the daemon's own.
    public var namespace: String? = nil

    /// The port as the daemon keys it.
    public var key: MonitoredPort { MonitoredPort(proto: proto, port: port, namespace: namespace) }

    public init(proto: TransportProtocol = .tcp, port: UInt16, name: String? = nil, expect: ExpectedState? = nil,
                maxConnections: Int? = nil) {
        self.proto = proto
        self.port = port
        self.name = name
        self.expect = expect
        self.maxConnections = maxConnections
    }
}

/// What a configured port should be.
public enum ExpectedState: String, Sendable, Hashable, CaseIterable {
    /// Something listens (TCP) or is bound (UDP).
    case listening
    /// Nothing listens.
    case closed
}

/// The numbers a rule can watch (PRODUCT.md, "Rule metrics").
public enum RuleMetric: Sendable, Hashable, CustomStringConvertible {
    case connections
    case connectionsInState(String)
    case acceptQueue
    case acceptQueueRatio
    case receivedBps, sentBps, receivedPps, sentPps
    case connectionsOpenedPerSecond
    case listenDropsPerSecond
    case dropsPerSecond
    case retransmitsPerSecond
    case connectTimeoutsPerSecond
    case connectRefusedPerSecond
    /// 1 when the last probe of a target was healthy, else 0.
    case probeSuccess
    /// A probe's median connect latency in milliseconds (absent when it did not connect).
    case probeLatencyMs
    /// Days until the probed server's certificate expires (TLS targets).
    case tlsDaysLeft

    /// Metrics judged on probe results rather than port rows.
    public static let probeMetricNames = ["probe_success", "probe_latency_ms", "tls_days_left"]

    /// States accepted after `connections.`.
    public static let connectionStates = ["established", "syn_recv", "syn_sent", "time_wait", "close_wait",
                                          "fin_wait", "other", "total"]
    /// Every metric name a config may use.
    public static var names: [String] {
        ["connections"] + connectionStates.map { "connections.\($0)" } + [
            "accept_queue", "accept_queue_ratio", "received_bps", "sent_bps", "received_pps", "sent_pps",
            "connections_opened_per_second", "listen_drops_per_second", "drops_per_second",
            "retransmits_per_second", "connect_timeouts_per_second", "connect_refused_per_second",
        ] + probeMetricNames
    }

    /// Whether the metric is judged on probe results (a rule names `probe:`, not `ports:`).
    public var isProbeMetric: Bool {
        switch self {
        case .probeSuccess, .probeLatencyMs, .tlsDaysLeft: true
        default: false
        }
    }

    public init?(name: String) {
        switch name {
        case "connections": self = .connections
        case "accept_queue": self = .acceptQueue
        case "accept_queue_ratio": self = .acceptQueueRatio
        case "received_bps": self = .receivedBps
        case "sent_bps": self = .sentBps
        case "received_pps": self = .receivedPps
        case "sent_pps": self = .sentPps
        case "connections_opened_per_second": self = .connectionsOpenedPerSecond
        case "listen_drops_per_second": self = .listenDropsPerSecond
        case "drops_per_second": self = .dropsPerSecond
        case "retransmits_per_second": self = .retransmitsPerSecond
        case "connect_timeouts_per_second": self = .connectTimeoutsPerSecond
        case "connect_refused_per_second": self = .connectRefusedPerSecond
        case "probe_success": self = .probeSuccess
        case "probe_latency_ms": self = .probeLatencyMs
        case "tls_days_left": self = .tlsDaysLeft
        default:
            guard name.hasPrefix("connections.") else { return nil }
            let state = String(name.dropFirst("connections.".count))
            guard Self.connectionStates.contains(state) else { return nil }
            self = .connectionsInState(state)
        }
    }

    public var description: String {
        switch self {
        case .connections: "connections"
        case .connectionsInState(let s): "connections.\(s)"
        case .acceptQueue: "accept_queue"
        case .acceptQueueRatio: "accept_queue_ratio"
        case .receivedBps: "received_bps"
        case .sentBps: "sent_bps"
        case .receivedPps: "received_pps"
        case .sentPps: "sent_pps"
        case .connectionsOpenedPerSecond: "connections_opened_per_second"
        case .listenDropsPerSecond: "listen_drops_per_second"
        case .dropsPerSecond: "drops_per_second"
        case .retransmitsPerSecond: "retransmits_per_second"
        case .connectTimeoutsPerSecond: "connect_timeouts_per_second"
        case .connectRefusedPerSecond: "connect_refused_per_second"
        case .probeSuccess: "probe_success"
        case .probeLatencyMs: "probe_latency_ms"
        case .tlsDaysLeft: "tls_days_left"
        }
    }

    /// The metric's value in one sample; nil when it does not apply (no accept queue).
    public func value(in s: PortSample) -> Double? {
        func rate(_ n: Double) -> Double { s.windowSeconds > 0 ? n / s.windowSeconds : 0 }
        switch self {
        case .connections: return Double(s.connections.total)
        case .connectionsInState(let state): return s.connections.count(named: state).map(Double.init)
        case .acceptQueue: return s.acceptQueue.map(Double.init)
        case .acceptQueueRatio:
            guard let q = s.acceptQueue, let m = s.acceptQueueMax, m > 0 else { return nil }
            return Double(q) / Double(m)
        case .receivedBps: return s.receivedBps
        case .sentBps: return s.sentBps
        case .receivedPps: return s.receivedPps
        case .sentPps: return s.sentPps
        case .connectionsOpenedPerSecond: return rate(Double(s.connectionsOpened))
        case .listenDropsPerSecond: return rate(Double(s.listenDrops))
        case .dropsPerSecond: return rate(Double(s.drops))
        case .retransmitsPerSecond: return rate(Double(s.retransmits))
        case .connectTimeoutsPerSecond: return rate(Double(s.connectTimeouts))
        case .connectRefusedPerSecond: return rate(Double(s.connectRefused))
        case .probeSuccess, .probeLatencyMs, .tlsDaysLeft: return nil
        }
    }

    /// The metric's value in one probe result; nil for port metrics and when it does not apply
    /// (no latency without a connection, no days left without TLS).
    public func value(in r: ProbeResult) -> Double? {
        switch self {
        case .probeSuccess: return r.healthy ? 1 : 0
        case .probeLatencyMs: return r.latency?.median
        case .tlsDaysLeft: return r.tls.map { Double($0.daysLeft) }
        default: return nil
        }
    }
}

/// One alerting rule: a threshold (`above`/`below`) or an anomaly model on a metric, per port.
public struct RuleConfig: Sendable, Hashable {
    public var name: String
    /// Which ports it applies to (`"443"`, `"8000-8100"`, `"53/udp"`); nil: every monitored port.
    public var ports: String? = nil
    /// For probe metrics: the target (`host:port` as configured) it applies to; nil: every probe.
    public var probe: String? = nil
    public var metric: RuleMetric
    public var above: Double? = nil
    public var below: Double? = nil
    public var anomaly: AnomalyConfig? = nil
    /// How long the condition must hold before the alert fires.
    public var forDuration: Duration = .zero
    /// How long the condition must stay false before the alert resolves (default: three intervals).
    public var keepFiringFor: Duration? = nil
    public var severity: String = "warning"
    /// The network namespaces (labels) whose rows it judges, nil in the list standing for the
    /// daemon's own (`host`); nil: every watched namespace.
    public var namespaces: [String?]? = nil

    public init(name: String, ports: String? = nil, metric: RuleMetric, above: Double? = nil, below: Double? = nil,
                anomaly: AnomalyConfig? = nil, forDuration: Duration = .zero, keepFiringFor: Duration? = nil,
                severity: String = "warning", probe: String? = nil, namespaces: [String?]? = nil) {
        self.name = name
        self.namespaces = namespaces
        self.ports = ports
        self.probe = probe
        self.metric = metric
        self.above = above
        self.below = below
        self.anomaly = anomaly
        self.forDuration = forDuration
        self.keepFiringFor = keepFiringFor
        self.severity = severity
    }
}

/// An anomaly rule's model: fire when the value is `sigma` deviations from what was learnt.
public struct AnomalyConfig: Sendable, Hashable {
    public var sigma: Double = 4
    /// Learning time before the rule may fire.
    public var warmup: Duration = .seconds(3600)

    public init(sigma: Double = 4, warmup: Duration = .seconds(3600)) {
        self.sigma = sigma
        self.warmup = warmup
    }
}

public struct DetectorConfig: Sendable, Hashable {
    public var newListener = true
    public var ownerChanged = true
    public var portScan = false
    public var synFlood = false
    public var connectionStorm = false
    /// Thresholds and windows of the security detectors (`port_scan: {ports, window}`,
    /// `syn_flood: {syn_recv, syn_rate, quiet}`, `connection_storm: {connections, window}`); its
    /// on/off switches are the three above.
    public var thresholds = DetectorSettings()

    public init() {}

    /// What the sampler runs, nil when no security detector is on.
    public var security: DetectorSettings? {
        guard portScan || synFlood || connectionStorm else { return nil }
        var s = thresholds
        s.portScan = portScan
        s.synFlood = synFlood
        s.connectionStorm = connectionStorm
        return s
    }
}

/// Where alerts go.
public enum ChannelConfig: Sendable, Hashable {
    case log
    case webhook(url: String, timeout: Duration)
    case alertmanager(url: String, timeout: Duration)
    case exec(command: [String], timeout: Duration)
}

public struct MetricsConfig: Sendable, Hashable {
    /// At most this many (protocol, port) label sets in `/metrics`.
    public var maxPorts = 500

    public init() {}
}

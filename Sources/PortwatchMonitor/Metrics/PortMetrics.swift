import PortwatchCore
import Prometheus
import Synchronization

/// The daemon's Prometheus metrics (`GET /metrics`), with the contract names of PRODUCT.md.
///
/// Per-port series exist only for the ports `MetricPortSelection` picks (listening or configured,
/// never ephemeral, at most `maxPorts`); a port that stops qualifying loses its series. The
/// `*_total` counters are the sums of the sampler's windows, accumulated here, so they only grow
/// (a port that drops out and comes back starts again from zero, which Prometheus reads as a reset).
///
/// The daemon calls `update` once per sample and the `record…` methods as things happen; the
/// HTTP layer calls `refresh` on each scrape, which applies a sample only if `update` has not.
public final class PortMetrics: Sendable {
    /// Where the series live; `render()` emits it.
    public let registry: PrometheusCollectorRegistry
    /// At most this many (protocol, port) label sets (`metrics.max_ports`).
    public let maxPorts: Int

    private let state: Mutex<State>
    private let sampleDuration: DurationHistogram
    private let historyWriteErrors: Counter
    private let scanDetected: [ScanKind: Counter]
    private let floodDetected: Counter
    private let connectionStorms: Counter
    private let lastSampleTime: Gauge
    private let labelledPorts: Gauge
    private let omittedPorts: Gauge

    /// Series of one labelled port.
    private struct PortSeries: Sendable {
        var listening: [String: Gauge] = [:]
        var connections: [Gauge] = []
        var acceptQueue: Gauge?
        var acceptQueueMax: Gauge?
        var receivedBytes: Counter
        var sentBytes: Counter
        var receivedPackets: Counter
        var sentPackets: Counter
        var retransmits: Counter
        var drops: Counter
        var connectionsOpened: Counter
    }

    private struct State: Sendable {
        var ports: [MonitoredPort: PortSeries] = [:]
        var configured: Set<MonitoredPort> = []
        /// `takenAt` of the last applied sample: a window is added to the counters once.
        var lastApplied: Double?
        var alertsFiring: [String: Gauge] = [:]
        var queueDropped: [String: Counter] = [:]
        var probes: [String: ProbeSeries] = [:]
    }

    /// A metric's name and help text (no namespace or unit parts: the names are the contract's, whole).
    private static func metric(_ name: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: name, unitName: "", helpText: help)
    }

    /// Connection states as label values, in `ConnectionCounts` order.
    static let connectionStates = ["established", "syn_recv", "syn_sent", "time_wait", "close_wait", "fin_wait", "other"]

    public init(maxPorts: Int = MetricsConfig().maxPorts, configuredPorts: Set<MonitoredPort> = [],
                registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
        self.registry = registry
        self.maxPorts = maxPorts
        state = Mutex(State(configured: configuredPorts))
        sampleDuration = registry.makeDurationHistogram(
            descriptor: Self.metric("portwatch_sample_duration_seconds",
                                    "Time taken by one sample (socket dump, process attribution, window)."),
            buckets: [.milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
                      .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(2500), .seconds(5)])
        historyWriteErrors = registry.makeCounter(
            descriptor: Self.metric("portwatch_history_write_errors_total", "Samples or events the history store failed to write."))
        // Every kind has its series from the start, at 0, so rate() sees the first scan.
        scanDetected = Dictionary(uniqueKeysWithValues: ScanKind.allCases.map { kind in
            (kind, registry.makeCounter(
                descriptor: Self.metric("portwatch_scan_detected_total", "Port scans detected (scan_detected events), by kind."),
                labels: [("kind", kind.rawValue)]))
        })
        floodDetected = registry.makeCounter(
            descriptor: Self.metric("portwatch_flood_detected_total", "SYN floods and accept overloads detected (flood_detected events)."))
        connectionStorms = registry.makeCounter(
            descriptor: Self.metric("portwatch_connection_storm_total", "Connection storms detected (connection_storm events)."))
        lastSampleTime = registry.makeGauge(
            descriptor: Self.metric("portwatch_last_sample_timestamp_seconds", "Wall-clock time of the latest sample."))
        labelledPorts = registry.makeGauge(
            descriptor: Self.metric("portwatch_metrics_ports", "Ports with their own label sets in these metrics."))
        omittedPorts = registry.makeGauge(descriptor: Self.metric(
            "portwatch_metrics_ports_omitted",
            "Listening or configured ports left without label sets because of metrics.max_ports."))
    }

    /// Ports whose series are present, in no particular order.
    public var labelledPortSet: Set<MonitoredPort> { state.withLock { Set($0.ports.keys) } }

    /// Applies a sample: gauges take its values, counters grow by its window. A sample already
    /// applied (same `takenAt`) changes nothing.
    public func update(_ latest: LatestSample, configuredPorts: Set<MonitoredPort>) {
        state.withLock { st in
            st.configured = configuredPorts
            apply(latest, to: &st)
        }
    }

    /// Applies the sample if it is newer than the last one applied, keeping the configured ports.
    public func refresh(from latest: LatestSample) {
        state.withLock { st in apply(latest, to: &st) }
    }

    /// The exposition text (`text/plain; version=0.0.4`).
    public func render() -> [UInt8] {
        var buffer: [UInt8] = []
        buffer.reserveCapacity(64 << 10)
        registry.emit(into: &buffer)
        return buffer
    }

    // MARK: Events the daemon reports

    /// One sample's duration.
    public func recordSampleDuration(_ duration: Duration) { sampleDuration.record(duration) }

    /// A failed history write.
    public func recordHistoryWriteError() { historyWriteErrors.increment() }

    /// Detected port scans of one kind.
    public func recordScanDetected(_ count: Int = 1, kind: ScanKind = .syn) {
        scanDetected[kind]?.increment(by: Int64(count))
    }

    /// Detections that started: counted by kind.
    public func recordDetections(_ started: [SecurityEvent]) {
        for e in started where e.phase == .started {
            switch e.kind {
            case .scanDetected: recordScanDetected(kind: e.scanKind ?? .syn)
            case .floodDetected: floodDetected.increment()
            case .connectionStorm: connectionStorms.increment()
            }
        }
    }

    /// Alerts a channel's full queue dropped.
    public func recordAlertDropped(channel: String, count: Int = 1) {
        let counter = state.withLock { st in
            if let c = st.queueDropped[channel] { return c }
            let c = registry.makeCounter(descriptor: Self.metric("portwatch_alert_queue_dropped_total", "Alerts dropped because a channel's queue was full."), labels: [("channel", channel)])
            st.queueDropped[channel] = c
            return c
        }
        counter.increment(by: Int64(count))
    }

    /// Firing alerts per rule: every rule in `rules` gets a series (0 when quiet).
    public func updateAlerts(_ alerts: [Alert], rules: [String]) {
        var firing: [String: Int] = [:]
        for r in rules { firing[r] = 0 }
        for a in alerts where a.state == .firing { firing[a.rule, default: 0] += 1 }
        state.withLock { st in
            for (rule, gauge) in st.alertsFiring where firing[rule] == nil {
                registry.unregisterGauge(gauge)
                st.alertsFiring[rule] = nil
            }
            for (rule, count) in firing {
                let gauge = st.alertsFiring[rule] ?? registry.makeGauge(
                    descriptor: Self.metric("portwatch_alerts_firing", "Alerts firing now, per rule."), labels: [("rule", rule)])
                st.alertsFiring[rule] = gauge
                gauge.set(Double(count))
            }
        }
    }

    /// Series of one probe target.
    private struct ProbeSeries: Sendable {
        var success: Gauge
        var duration: DurationHistogram
        var tlsExpiry: Gauge?
    }

    /// Buckets of `portwatch_probe_duration_seconds`: loopback answers in well under a millisecond,
    /// a distant host in hundreds, a dropping firewall at the timeout.
    static let probeBuckets: [Duration] = [
        .microseconds(250), .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10), .milliseconds(25),
        .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(2500),
        .seconds(5), .seconds(10),
    ]

    /// The outcome of an active probe of `target` (host:port as configured): success, how long it
    /// took (into the histogram), and the seconds until its certificate expires when it has one.
    public func recordProbe(target: String, success: Bool, duration: Duration, tlsExpiry: Double? = nil) {
        let series = state.withLock { st -> ProbeSeries in
            var series = st.probes[target] ?? ProbeSeries(
                success: registry.makeGauge(
                    descriptor: Self.metric("portwatch_probe_success", "Whether the last probe of the target was healthy (1) or not (0)."),
                    labels: [("target", target)]),
                duration: registry.makeDurationHistogram(
                    descriptor: Self.metric("portwatch_probe_duration_seconds",
                                            "Time probes of the target took to answer (connect, and the TLS handshake when asked)."),
                    labels: [("target", target)], buckets: Self.probeBuckets))
            if tlsExpiry != nil, series.tlsExpiry == nil {
                series.tlsExpiry = registry.makeGauge(
                    descriptor: Self.metric("portwatch_probe_tls_expiry_seconds",
                                            "Seconds until the certificate the target presented expires (negative once expired)."),
                    labels: [("target", target)])
            } else if tlsExpiry == nil, let gauge = series.tlsExpiry {
                registry.unregisterGauge(gauge)
                series.tlsExpiry = nil
            }
            st.probes[target] = series
            return series
        }
        series.success.set(success ? 1.0 : 0.0)
        series.duration.record(duration)
        if let tlsExpiry { series.tlsExpiry?.set(tlsExpiry) }
    }

    /// Drops the series of probe targets no longer configured (a reload).
    public func retainProbes(_ targets: Set<String>) {
        state.withLock { st in
            for (target, series) in st.probes where !targets.contains(target) {
                registry.unregisterGauge(series.success)
                registry.unregisterDurationHistogram(series.duration)
                if let gauge = series.tlsExpiry { registry.unregisterGauge(gauge) }
                st.probes[target] = nil
            }
        }
    }

    // MARK: Per-port series

    private func apply(_ latest: LatestSample, to st: inout State) {
        let snapshot = latest.snapshot
        if let last = st.lastApplied, snapshot.takenAt <= last { return }
        st.lastApplied = snapshot.takenAt
        lastSampleTime.set(snapshot.takenAt)

        let selection = MetricPortSelection(snapshot: snapshot, configured: st.configured, maxPorts: maxPorts)
        let wanted = Set(selection.ports)
        for (key, series) in st.ports where key.namespace == nil && !wanted.contains(key) {
            unregister(series)
            st.ports[key] = nil
        }
        var rows: [MonitoredPort: PortSummary] = [:]
        for row in snapshot.ports where row.role == .local {
            rows[MonitoredPort(proto: row.proto, port: row.port)] = row
        }
        for key in selection.ports {
            var series = st.ports[key] ?? makeSeries(key)
            let row = rows[key]
            update(&series, key: key, row: row, report: latest.report)
            st.ports[key] = series
        }
        // Other network namespaces (`namespaces:`): the same series with a `netns` label, within
        // what is left of the same bound, so namespaces cannot flood Prometheus either.
        var remaining = max(0, maxPorts - selection.ports.count)
        var omitted = selection.omitted
        var namespaced = Set<MonitoredPort>()
        for part in latest.namespaceParts {
            let label = part.namespace.daemonLabel
            let chosen = MetricPortSelection(snapshot: part.snapshot, configured: [], maxPorts: remaining)
            remaining -= chosen.ports.count
            omitted += chosen.omitted
            var partRows: [MonitoredPort: PortSummary] = [:]
            for row in part.snapshot.ports where row.role == .local {
                partRows[MonitoredPort(proto: row.proto, port: row.port, namespace: label)] = row
            }
            for plain in chosen.ports {
                let key = MonitoredPort(proto: plain.proto, port: plain.port, namespace: label)
                namespaced.insert(key)
                var series = st.ports[key] ?? makeSeries(key)
                let row = partRows[key]
                update(&series, key: key, row: row, report: part.report)
                st.ports[key] = series
            }
        }
        for (key, series) in st.ports where key.namespace != nil && !namespaced.contains(key) {
            unregister(series)
            st.ports[key] = nil
        }
        labelledPorts.set(Double(selection.ports.count + namespaced.count))
        omittedPorts.set(Double(omitted))
    }

    private func labels(_ key: MonitoredPort) -> [(String, String)] {
        var l = [("protocol", key.proto.rawValue), ("port", String(key.port))]
        if let ns = key.namespace { l.append(("netns", ns)) }
        return l
    }

    private func makeSeries(_ key: MonitoredPort) -> PortSeries {
        let l = labels(key)
        func counter(_ name: String, _ help: String) -> Counter {
            registry.makeCounter(descriptor: Self.metric(name, help), labels: l)
        }
        var series = PortSeries(
            receivedBytes: counter("portwatch_port_received_bytes_total", "Payload bytes received on the port's connections."),
            sentBytes: counter("portwatch_port_sent_bytes_total", "Payload bytes sent on the port's connections."),
            receivedPackets: counter("portwatch_port_received_packets_total", "Packets (segments) received on the port."),
            sentPackets: counter("portwatch_port_sent_packets_total", "Packets (segments) sent on the port."),
            retransmits: counter("portwatch_port_retransmits_total", "TCP segments retransmitted on the port's connections."),
            drops: counter("portwatch_port_drops_total",
                           "Drops on the port: listen-queue overflows and SYN drops, socket and receive-buffer drops."),
            connectionsOpened: counter("portwatch_port_connections_opened_total", "Connections opened on the port."))
        series.connections = Self.connectionStates.map { state in
            registry.makeGauge(descriptor: Self.metric("portwatch_port_connections", "Connections on the port now, by TCP state."), labels: l + [("state", state)])
        }
        if key.proto == .tcp {
            series.acceptQueue = registry.makeGauge(
                descriptor: Self.metric("portwatch_port_accept_queue", "Connections completed and waiting for accept() on the port's listeners."), labels: l)
            series.acceptQueueMax = registry.makeGauge(
                descriptor: Self.metric("portwatch_port_accept_queue_max", "Accept queue limit of the port's listeners (the listen() backlog)."), labels: l)
        }
        return series
    }

    /// Sets a port's gauges from its row (nil: the port has no row now) and adds the window's
    /// growth to its counters; the same for the daemon's own namespace and every other.
    private func update(_ series: inout PortSeries, key: MonitoredPort, row: PortSummary?, report: WindowReport?) {
        setListening(&series, key: key, addresses: row?.listening == true ? row!.addresses : [])
        let counts = row?.connections ?? ConnectionCounts()
        let values = [counts.established, counts.synRecv, counts.synSent, counts.timeWait, counts.closeWait,
                      counts.finWait, counts.other]
        for (gauge, value) in zip(series.connections, values) { gauge.set(Double(value)) }
        series.acceptQueue?.set(Double(row?.acceptQueue?.current ?? 0))
        series.acceptQueueMax?.set(Double(row?.acceptQueue?.max ?? 0))
        guard let report else { return }
        let a = report.activity(PortKey(role: .local, proto: key.proto, port: key.port))
        series.receivedBytes.increment(by: Int64(clamping: a.traffic.bytesReceived))
        series.sentBytes.increment(by: Int64(clamping: a.traffic.bytesSent))
        series.receivedPackets.increment(by: Int64(clamping: a.traffic.packetsReceived))
        series.sentPackets.increment(by: Int64(clamping: a.traffic.packetsSent))
        series.retransmits.increment(by: Int64(clamping: a.traffic.retransmits))
        series.drops.increment(by: Int64(clamping: a.traffic.drops &+ a.listenDrops))
        series.connectionsOpened.increment(by: Int64(a.opened))
    }

    /// One series per listening address (value 1); a port that does not listen keeps one series
    /// with an empty address and value 0, so `== 0` finds configured ports that are down.
    private func setListening(_ series: inout PortSeries, key: MonitoredPort, addresses: [String]) {
        let wanted = addresses.isEmpty ? [""] : addresses
        for (address, gauge) in series.listening where !wanted.contains(address) {
            registry.unregisterGauge(gauge)
            series.listening[address] = nil
        }
        for address in wanted {
            let gauge = series.listening[address] ?? registry.makeGauge(
                descriptor: Self.metric("portwatch_port_listening", "Whether the port listens (TCP) or is bound (UDP) on the address: 1, or 0 when not at all."), labels: labels(key) + [("address", address)])
            series.listening[address] = gauge
            gauge.set(addresses.isEmpty ? 0.0 : 1.0)
        }
    }

    private func unregister(_ series: PortSeries) {
        for g in series.listening.values { registry.unregisterGauge(g) }
        for g in series.connections { registry.unregisterGauge(g) }
        if let g = series.acceptQueue { registry.unregisterGauge(g) }
        if let g = series.acceptQueueMax { registry.unregisterGauge(g) }
        for c in [series.receivedBytes, series.sentBytes, series.receivedPackets, series.sentPackets,
                  series.retransmits, series.drops, series.connectionsOpened] {
            registry.unregisterCounter(c)
        }
    }
}

import PortwatchCore

/// Which ports get their own label sets in `/metrics`: a bound on the number of series, so a
/// busy host cannot flood Prometheus with one series per client port.
///
/// A port qualifies when it is configured, when it listens on TCP, or when it is bound on UDP
/// outside the ephemeral range (an unconnected UDP socket on an ephemeral port is a client —
/// a resolver, a QUIC connection — not a service). Ports that only carry connections never
/// qualify. Configured ports come first, then the rest by protocol and number, up to `maxPorts`.
public struct MetricPortSelection: Sendable, Equatable {
    /// The labelled ports, in order.
    public var ports: [MonitoredPort]
    /// Qualifying ports left out because of the bound.
    public var omitted: Int

    public init(snapshot: PortSnapshot, configured: Set<MonitoredPort>, maxPorts: Int) {
        let ephemeral = snapshot.classifier.ephemeral.range
        var listening = Set<MonitoredPort>()
        for row in snapshot.ports where row.role == .local && row.listening {
            if row.proto == .udp && ephemeral.contains(row.port) { continue }
            listening.insert(MonitoredPort(proto: row.proto, port: row.port))
        }
        let ordered = configured.sorted() + listening.subtracting(configured).sorted()
        let limit = max(0, maxPorts)
        ports = Array(ordered.prefix(limit))
        omitted = ordered.count - ports.count
    }
}

import PortwatchCore

/// One port's numbers at one sample: what the daemon stores, serves and judges.
///
/// A sample carries the row's state at the sample instant (listening, connections, accept queue,
/// owners) and the window that ended there (bytes, packets and errors since the previous sample,
/// exact across connections that came and went). History rows, rule metrics, `/metrics` and the
/// API's `window`/`rates` all read this one value, so every number means the same thing everywhere.
public struct PortSample: Sendable, Hashable, Codable {
    /// Wall-clock time of the sample, seconds since the epoch.
    public var time: Double
    public var proto: TransportProtocol
    public var port: UInt16
    public var listening: Bool
    /// Listening addresses (`0.0.0.0`, `::`, `127.0.0.1`).
    public var addresses: [String]
    public var connections: ConnectionCounts
    /// Accept queue now (TCP listeners), nil otherwise.
    public var acceptQueue: Int?
    public var acceptQueueMax: Int?
    /// Length of the window that ended at `time`, in seconds (0 for the first sample).
    public var windowSeconds: Double
    /// Activity in the window.
    public var bytesReceived: UInt64
    public var bytesSent: UInt64
    public var packetsReceived: UInt64
    public var packetsSent: UInt64
    public var connectionsOpened: Int
    public var connectionsClosed: Int
    public var listenDrops: UInt64
    public var drops: UInt64
    public var retransmits: UInt64
    public var connectTimeouts: Int
    public var connectRefused: Int
    /// Owning processes: "name[pid]" (empty when unknown).
    public var owners: [String]
    /// Executables of the owners (for `owner_changed`), e.g. "/usr/sbin/nginx".
    public var executables: [String]
    /// The network namespace of the row (its label) when the daemon watches other namespaces;
    /// nil for the daemon's own.
    public var namespace: String? = nil

    public init(time: Double, proto: TransportProtocol, port: UInt16, listening: Bool = false,
                addresses: [String] = [], connections: ConnectionCounts = ConnectionCounts(),
                acceptQueue: Int? = nil, acceptQueueMax: Int? = nil, windowSeconds: Double = 0,
                bytesReceived: UInt64 = 0, bytesSent: UInt64 = 0, packetsReceived: UInt64 = 0,
                packetsSent: UInt64 = 0, connectionsOpened: Int = 0, connectionsClosed: Int = 0,
                listenDrops: UInt64 = 0, drops: UInt64 = 0, retransmits: UInt64 = 0,
                connectTimeouts: Int = 0, connectRefused: Int = 0, owners: [String] = [],
                executables: [String] = []) {
        self.time = time
        self.proto = proto
        self.port = port
        self.listening = listening
        self.addresses = addresses
        self.connections = connections
        self.acceptQueue = acceptQueue
        self.acceptQueueMax = acceptQueueMax
        self.windowSeconds = windowSeconds
        self.bytesReceived = bytesReceived
        self.bytesSent = bytesSent
        self.packetsReceived = packetsReceived
        self.packetsSent = packetsSent
        self.connectionsOpened = connectionsOpened
        self.connectionsClosed = connectionsClosed
        self.listenDrops = listenDrops
        self.drops = drops
        self.retransmits = retransmits
        self.connectTimeouts = connectTimeouts
        self.connectRefused = connectRefused
        self.owners = owners
        self.executables = executables
    }

    /// The port's identity.
    public var key: MonitoredPort { MonitoredPort(proto: proto, port: port, namespace: namespace) }

    private func perSecond(_ v: Double) -> Double { windowSeconds > 0 ? v / windowSeconds : 0 }
    public var receivedBps: Double { perSecond(Double(bytesReceived) * 8) }
    public var sentBps: Double { perSecond(Double(bytesSent) * 8) }
    public var receivedPps: Double { perSecond(Double(packetsReceived)) }
    public var sentPps: Double { perSecond(Double(packetsSent)) }
}

/// A (protocol, port) the monitor keeps apart: the key of history rows, alerts and metric labels.
public struct MonitoredPort: Sendable, Hashable, Codable, Comparable, CustomStringConvertible {
    public var proto: TransportProtocol
    public var port: UInt16
    /// The network namespace (label) of a row in another namespace; nil for the daemon's own.
    public var namespace: String? = nil

    public init(proto: TransportProtocol, port: UInt16, namespace: String? = nil) {
        self.proto = proto
        self.port = port
        self.namespace = namespace
    }

    public static func < (a: Self, b: Self) -> Bool {
        (a.namespace ?? "", a.proto, a.port) < (b.namespace ?? "", b.proto, b.port)
    }
    public var description: String { (namespace.map { "\($0) " } ?? "") + "\(proto.rawValue)/\(port)" }
}

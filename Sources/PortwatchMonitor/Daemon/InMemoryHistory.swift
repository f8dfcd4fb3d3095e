import PortwatchCore

/// History kept in memory, a bounded ring per port: the daemon's history before (or without) a
/// database, and the store of tests.
public actor InMemoryHistory: HistoryReading, HistoryWriting {
    /// Samples kept per port, and events kept in all.
    public let samplesPerPort: Int
    public let eventCapacity: Int
    private var samples: [MonitoredPort: [PortSample]] = [:]
    private var log: [MonitorEvent] = []
    private var listened = Set<MonitoredPort>()

    public init(samplesPerPort: Int = 720, eventCapacity: Int = 10_000) {
        self.samplesPerPort = max(1, samplesPerPort)
        self.eventCapacity = max(1, eventCapacity)
    }

    public func write(samples new: [PortSample], events: [MonitorEvent]) {
        for s in new {
            samples[s.key, default: []].append(s)
            if samples[s.key]!.count > samplesPerPort { samples[s.key]!.removeFirst(samples[s.key]!.count - samplesPerPort) }
            if s.listening { listened.insert(s.key) }
        }
        log.append(contentsOf: events)
        if log.count > eventCapacity { log.removeFirst(log.count - eventCapacity) }
    }

    public func history(_ port: MonitoredPort, since: Double, step: Double?) throws -> HistorySeries {
        if let namespace = port.namespace, !samples.keys.contains(where: { $0.namespace == namespace }) {
            throw HistoryNamespace.unknown(namespace, stored: Array(Set(samples.keys.compactMap(\.namespace))))
        }
        let raw = (samples[port] ?? []).filter { $0.time >= since }
        guard let step, step > 0 else {
            return HistorySeries(proto: port.proto, port: port.port, stepSeconds: raw.last?.windowSeconds ?? 0, samples: raw,
                                 namespace: port.namespace)
        }
        var buckets: [(start: Double, samples: [PortSample])] = []
        for s in raw {
            let start = (s.time / step).rounded(.down) * step
            if buckets.last?.start == start { buckets[buckets.count - 1].samples.append(s) } else { buckets.append((start, [s])) }
        }
        return HistorySeries(proto: port.proto, port: port.port, stepSeconds: step,
                             samples: buckets.map { Self.rollUp($0.samples, start: $0.start, step: step) },
                             namespace: port.namespace)
    }

    public func events(since: Double, port: UInt16?, limit: Int) -> [MonitorEvent] {
        Array(log.lazy.filter { $0.time >= since && (port == nil || $0.port == port) }.prefix(max(0, limit)))
    }

    public func events(since: Double, port: UInt16?, netns: NamespaceFilter?, limit: Int) -> [MonitorEvent] {
        Array(log.lazy.filter { $0.time >= since && (port == nil || $0.port == port) && netns?.matches($0.namespace) != false }
            .prefix(max(0, limit)))
    }

    public func everListened() -> Set<MonitoredPort> { listened }

    /// One step of a roll-up, as `HistorySeries` defines it: window counters summed, state
    /// (connections, accept queue) averaged, the latest owners.
    static func rollUp(_ group: [PortSample], start: Double, step: Double) -> PortSample {
        var out = PortSample(time: start, proto: group[0].proto, port: group[0].port)
        out.namespace = group[0].namespace
        let n = Double(group.count)
        func mean(_ f: (PortSample) -> Int) -> Int { Int((Double(group.reduce(0) { $0 + f($1) }) / n).rounded()) }
        out.windowSeconds = group.reduce(0) { $0 + $1.windowSeconds }
        out.listening = group.contains(where: \.listening)
        out.addresses = group.last!.addresses
        out.owners = group.last!.owners
        out.executables = group.last!.executables
        out.connections.established = mean(\.connections.established)
        out.connections.synRecv = mean(\.connections.synRecv)
        out.connections.synSent = mean(\.connections.synSent)
        out.connections.timeWait = mean(\.connections.timeWait)
        out.connections.closeWait = mean(\.connections.closeWait)
        out.connections.finWait = mean(\.connections.finWait)
        out.connections.other = mean(\.connections.other)
        if group.contains(where: { $0.acceptQueue != nil }) { out.acceptQueue = mean { $0.acceptQueue ?? 0 } }
        out.acceptQueueMax = group.last!.acceptQueueMax
        for s in group {
            out.bytesReceived &+= s.bytesReceived
            out.bytesSent &+= s.bytesSent
            out.packetsReceived &+= s.packetsReceived
            out.packetsSent &+= s.packetsSent
            out.connectionsOpened += s.connectionsOpened
            out.connectionsClosed += s.connectionsClosed
            out.listenDrops &+= s.listenDrops
            out.drops &+= s.drops
            out.retransmits &+= s.retransmits
            out.connectTimeouts += s.connectTimeouts
            out.connectRefused += s.connectRefused
        }
        return out
    }
}

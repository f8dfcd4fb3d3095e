import PortwatchCore

extension PortSample {
    /// The monitor's rows of one sample: listening ports, server-side ports and configured ports,
    /// each with the window that ended at the snapshot; never a client's ephemeral port.
    ///
    /// A local row on a port inside the ephemeral range is kept only while something listens
    /// there (or the port is configured): otherwise it is a client's automatic port, whose number
    /// means nothing tomorrow and would grow history and metric labels without bound. Configured
    /// ports always have a row (zeros when nothing uses them), so expectations can see them.
    public static func rows(snapshot: PortSnapshot, report: WindowReport?, configured: Set<MonitoredPort>) -> [PortSample] {
        let ephemeral = snapshot.classifier.ephemeral.range
        let seconds = report?.seconds ?? 0
        let time = snapshot.takenAt
        func kept(_ key: MonitoredPort, listening: Bool) -> Bool {
            listening || !ephemeral.contains(key.port) || configured.contains(key)
        }
        func row(_ key: MonitoredPort, _ activity: PortActivity) -> PortSample {
            PortSample(time: time, proto: key.proto, port: key.port, windowSeconds: seconds,
                       bytesReceived: activity.traffic.bytesReceived, bytesSent: activity.traffic.bytesSent,
                       packetsReceived: activity.traffic.packetsReceived, packetsSent: activity.traffic.packetsSent,
                       connectionsOpened: activity.opened, connectionsClosed: activity.closed,
                       listenDrops: activity.listenDrops, drops: activity.traffic.drops, retransmits: activity.traffic.retransmits,
                       connectTimeouts: activity.connectTimeouts, connectRefused: activity.connectRefused)
        }

        var rows: [MonitoredPort: PortSample] = [:]
        // The core's one rows function (the same rows as `ports --sample` and `top`), local only;
        // it includes ports whose connections came and went within the window.
        for r in portRows(snapshot: snapshot, window: report, includeOutgoing: false) where r.summary.role == .local {
            let summary = r.summary
            let key = MonitoredPort(proto: summary.proto, port: summary.port)
            guard kept(key, listening: summary.listening) else { continue }
            var sample = row(key, r.activity)
            sample.listening = summary.listening
            sample.addresses = summary.addresses
            sample.connections = summary.connections
            let queue = summary.acceptQueue
            sample.acceptQueue = queue?.current
            sample.acceptQueueMax = queue?.max
            sample.owners = summary.processes.map { "\($0.name)[\($0.pid)]" }
            sample.executables = executables(of: summary.processes)
            rows[key] = sample
        }
        for port in configured where rows[port] == nil {
            rows[port] = row(port, PortActivity())
        }
        return rows.values.sorted { $0.key < $1.key }
    }

    /// Distinct executables of the owners, in order: the program path the process was started
    /// with (its first command-line word), or its short name when the command line is empty
    /// (kernel threads, or a process that cleared it).
    static func executables(of processes: [ProcessRecord]) -> [String] {
        var seen = Set<String>()
        var out: [String] = []
        for p in processes {
            let first = p.command.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true).first
            let exe = first.map(String.init) ?? p.name
            if seen.insert(exe).inserted { out.append(exe) }
        }
        return out
    }
}

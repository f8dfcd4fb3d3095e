import ArgumentParser
import Foundation
import PortwatchCore
import PortwatchMonitor

/// Fills a history database as a week of busy ports would, through the daemon's store code
/// (write every interval, maintain every minute) on a simulated clock that ends now; then times
/// the queries `portwatch history` makes and prints the figures as JSON.
struct HistoryFill: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "history-fill",
        abstract: "Fill a history database with simulated busy ports and time queries on it."
    )

    @Option(help: "Number of busy ports (consecutive, from --first-port).") var ports = 50
    @Option(help: "First port.") var firstPort: UInt16 = 10000
    @Option(help: "Days of history (ending now).") var days = 7.0
    @Option(help: "Sampling interval.") var interval = "5s"
    @Option(help: "Database file to create (must not exist).") var db: String
    @Option(help: "Size cap of the database, in bytes.") var maxSize: UInt64 = 500_000_000

    func run() throws {
        let step = try seconds(interval, option: "--interval")
        guard step >= 0.1 else { throw ValidationError("--interval: at least 100ms") }
        guard ports >= 1, ports <= 10000, Int(firstPort) + ports <= 65536 else { throw ValidationError("--ports: 1 to 10000 ports within 1-65535") }
        guard days > 0, days <= 400 else { throw ValidationError("--days: between 0 and 400") }
        guard !FileManager.default.fileExists(atPath: db) else { throw ValidationError("--db: \(db) exists; remove it first") }

        let end = wallClock()
        let start = end - days * 86400
        let store = try HistoryStore(path: db, retention: Retention(), maxSize: maxSize)
        var traffic = SimulatedTraffic(ports: ports, firstPort: firstPort)
        let began = monotonicClock()
        var t = start
        var nextMaintain = start + 60
        var written = 0
        var events = (0..<ports).map { i in
            MonitorEvent(time: start, kind: .listenerStarted, proto: .tcp, port: firstPort + UInt16(i),
                         message: "tcp/\(Int(firstPort) + i) started listening")
        }
        while t <= end {
            let samples = traffic.next(time: t, window: t == start ? 0 : step)
            try store.write(samples: samples, events: events)
            events = []
            written += samples.count
            if t >= nextMaintain {
                try store.maintain(now: t)
                nextMaintain += 60
            }
            t += step
        }
        try store.maintain(now: end)
        try store.checkpoint()
        let fillSeconds = monotonicClock() - began

        let reader = try HistoryStore.openReadOnly(path: db)
        let port = MonitoredPort(proto: .tcp, port: firstPort)
        let now = wallClock()
        let queries: [(String, Double, Double?)] = [
            ("since_24h_step_1m", 86400, 60), ("since_7d_step_1h", 7 * 86400, 3600), ("since_1h", 3600, nil),
        ]
        var queryFigures: [(String, JSONValue)] = []
        for (name, span, queryStep) in queries {
            var times: [Double] = []
            var count = 0
            for _ in 0..<7 {
                let t0 = monotonicClock()
                count = try reader.history(port, since: now - span, until: now, step: queryStep).samples.count
                times.append((monotonicClock() - t0) * 1000)
            }
            times.sort()
            queryFigures.append((name, ["median_ms": .double(round3(times[times.count / 2])),
                                        "max_ms": .double(round3(times.last ?? 0)), "samples": .number(count)]))
        }
        let rows = try reader.rowCounts()
        let dbBytes = fileSize(db)
        let walBytes = fileSize(db + "-wal")
        let figures: JSONValue = [
            "ports": .number(ports), "days": .double(days), "interval_seconds": .double(step),
            "samples_written": .number(written), "fill_seconds": .double(round3(fillSeconds)),
            "file_bytes": .number(dbBytes + walBytes), "db_bytes": .number(dbBytes), "wal_bytes": .number(walBytes),
            "rows": .object(rows.map { ($0.0, .number($0.1)) }),
            "queries": .object(queryFigures),
        ]
        print(figures.serialized(pretty: true))
    }
}

private func round3(_ v: Double) -> Double { (v * 1000).rounded() / 1000 }

private func fileSize(_ path: String) -> UInt64 {
    ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber)?.uint64Value ?? 0
}

/// Busy ports with a daily rhythm and noise, deterministic (a fixed-seed generator) so runs compare.
struct SimulatedTraffic {
    let ports: Int
    let firstPort: UInt16
    private var state: UInt64 = 0x9E37_79B9_7F4A_7C15

    init(ports: Int, firstPort: UInt16) {
        self.ports = ports
        self.firstPort = firstPort
    }

    private mutating func random() -> Double {
        // xorshift64*: cheap and good enough for noise.
        state ^= state >> 12
        state ^= state << 25
        state ^= state >> 27
        return Double((state &* 2_685_821_657_736_338_717) >> 11) / Double(1 << 53)
    }

    mutating func next(time: Double, window: Double) -> [PortSample] {
        let day = (time.truncatingRemainder(dividingBy: 86400)) / 86400
        let rhythm = 0.6 + 0.4 * sin(2 * Double.pi * day)
        return (0..<ports).map { i in
            let base = 50.0 + Double(i * 37 % 450)
            var c = ConnectionCounts()
            c.established = Int(base * rhythm * (0.9 + 0.2 * random()))
            c.timeWait = Int(base * 0.2 * random())
            c.synRecv = Int(2 * random())
            c.closeWait = Int(3 * random())
            c.finWait = Int(2 * random())
            let rxRate = base * 20_000 * rhythm * (0.8 + 0.4 * random())
            let txRate = rxRate * (3 + random())
            let rx = UInt64(rxRate * window)
            let tx = UInt64(txRate * window)
            let opened = Int(base * 0.5 * window * random())
            return PortSample(
                time: time, proto: .tcp, port: firstPort + UInt16(i), listening: true, addresses: ["0.0.0.0"],
                connections: c, acceptQueue: Int(3 * random()), acceptQueueMax: 4096, windowSeconds: window,
                bytesReceived: rx, bytesSent: tx, packetsReceived: rx / 1200 + 1, packetsSent: tx / 1400 + 1,
                connectionsOpened: opened, connectionsClosed: opened, listenDrops: 0, drops: 0,
                retransmits: UInt64(Double(tx / 1400) * 0.001 * random()), connectTimeouts: 0, connectRefused: 0,
                owners: ["server[\(4000 + i)]"], executables: ["/usr/local/bin/server"])
        }
    }
}

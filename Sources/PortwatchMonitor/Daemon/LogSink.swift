import Logging
import PortwatchCore

/// Logs what changes between samples: ports that start or stop listening (info), and a line per
/// sample at debug level. The daemon's voice on stderr (and in the journal) before any other
/// view is attached.
public actor LogSink: SampleSink {
    private let logger: Logger
    private var listening: [MonitoredPort: PortSample]?

    public init(logger: Logger) { self.logger = logger }

    public func consume(_ latest: LatestSample) {
        let now = Dictionary(latest.samples.filter(\.listening).map { ($0.key, $0) }, uniquingKeysWith: { a, _ in a })
        defer { listening = now }
        let took = latest.report.map { ", took \(formatDuration(.seconds($0.sampleSeconds)))" } ?? " (baseline)"
        logger.debug("sample: \(latest.samples.count) ports, \(now.count) listening\(took)")
        guard let before = listening else {
            logger.info("watching \(latest.samples.count) ports, \(now.count) listening")
            return
        }
        for key in now.keys.sorted() where before[key] == nil {
            let s = now[key]!
            let owners = s.owners.isEmpty ? "" : " by \(s.owners.joined(separator: ","))"
            logger.info("\(key) listening on \(s.addresses.joined(separator: ","))\(owners)")
        }
        for key in before.keys.sorted() where now[key] == nil {
            logger.info("\(key) stopped listening")
        }
    }
}

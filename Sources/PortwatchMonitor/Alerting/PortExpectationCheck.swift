import PortwatchCore

/// Which check of a configured port: its state (`expect:`) or its connection ceiling.
struct ExpectationKey: Sendable, Hashable, Comparable {
    enum Check: Int, Sendable, Hashable { case state, maxConnections }
    var port: MonitoredPort
    var check: Check

    static func < (a: Self, b: Self) -> Bool { (a.port, a.check.rawValue) < (b.port, b.check.rawValue) }
}

/// One check on a configured port and what it takes to meet it.
enum ExpectationCheck: Sendable, Hashable, CustomStringConvertible {
    case state(ExpectedState)
    case maxConnections(Int)

    struct Verdict {
        var met: Bool
        /// The number judged: 1/0 for listening, the connection count for the ceiling.
        var value: Double
        /// What is wrong, phrased to follow the port's name.
        var failure: String
    }

    /// Judges the port's row (nil: no row, so nothing listens and nothing is connected).
    func judge(_ row: PortSample?) -> Verdict {
        switch self {
        case .state(let expected):
            let listening = row?.listening ?? false
            switch expected {
            case .listening:
                return Verdict(met: listening, value: listening ? 1 : 0,
                               failure: "is expected to be listening, but nothing listens")
            case .closed:
                let who = row.map { $0.owners.isEmpty ? "" : " (\($0.owners.joined(separator: ", ")))" } ?? ""
                return Verdict(met: !listening, value: listening ? 1 : 0,
                               failure: "is expected to be closed, but something listens\(who)")
            }
        case .maxConnections(let max):
            let total = row?.connections.total ?? 0
            return Verdict(met: total <= max, value: Double(total),
                           failure: "has \(total) connections, above max_connections \(max)")
        }
    }

    var description: String {
        switch self {
        case .state(let s): s.rawValue
        case .maxConnections(let n): "at most \(n) connections"
        }
    }

    /// The alert's rule name (Alertmanager's `alertname`).
    var ruleName: String {
        switch self {
        case .state(let s): "expect_\(s.rawValue)"
        case .maxConnections: "max_connections"
        }
    }

    var metric: String {
        switch self {
        case .state: "listening"
        case .maxConnections: "connections"
        }
    }

    var threshold: Double? {
        switch self {
        case .state: nil
        case .maxConnections(let n): Double(n)
        }
    }

    var severity: String {
        switch self {
        case .state: "critical"
        case .maxConnections: "warning"
        }
    }
}

/// A check's state between samples: met or not at the last sample (nil before the first), and
/// the alert it raised while unmet.
struct ExpectationRuntime: Sendable {
    var expectation: ExpectationCheck
    var name: String?
    var met: Bool? = nil
    var track: AlertTrack? = nil

    init(expectation: ExpectationCheck, name: String?) {
        self.expectation = expectation
        self.name = name
    }
}

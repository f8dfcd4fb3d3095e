import PortwatchCore

/// min / median / p95 / p99 / max / stddev of connect times, by nearest rank.
enum LatencyStatistics {
    static func summary(_ values: [Double]) -> LatencySummary? {
        guard !values.isEmpty else { return nil }
        let sorted = values.sorted()
        func rank(_ p: Double) -> Double {
            let index = Int((p * Double(sorted.count)).rounded(.up)) - 1
            return sorted[min(max(index, 0), sorted.count - 1)]
        }
        let mean = sorted.reduce(0, +) / Double(sorted.count)
        let variance = sorted.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(sorted.count)
        return LatencySummary(min: sorted[0], median: rank(0.5), p95: rank(0.95), p99: rank(0.99),
                              max: sorted[sorted.count - 1], stddev: variance.squareRoot())
    }
}

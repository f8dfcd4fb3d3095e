import Histogram
import PortwatchCore

/// Connect times of one probe, kept in an HdrHistogram (nanoseconds, three significant digits):
/// percentiles that stay exact to 0.1% however many attempts are recorded.
struct LatencyRecorder {
    private var histogram = Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: 3_600_000_000_000,
                                              numberOfSignificantValueDigits: .three)

    var isEmpty: Bool { histogram.totalCount == 0 }

    /// Records one connect time.
    mutating func record(seconds: Double) {
        let ns = UInt64(max(1, (seconds * 1e9).rounded()))
        _ = histogram.record(min(ns, 3_600_000_000_000))
    }

    /// min / median / p95 / p99 / max / stddev in milliseconds; nil when nothing was recorded.
    var summary: LatencySummary? {
        guard !isEmpty else { return nil }
        func ms(_ ns: UInt64) -> Double { Double(ns) / 1e6 }
        var summary = LatencySummary(min: ms(histogram.min), median: ms(histogram.valueAtPercentile(50)),
                                     p95: ms(histogram.valueAtPercentile(95)), p99: ms(histogram.valueAtPercentile(99)),
                                     max: ms(histogram.max), stddev: histogram.stdDeviation / 1e6)
        summary.mean = histogram.mean / 1e6
        return summary
    }
}

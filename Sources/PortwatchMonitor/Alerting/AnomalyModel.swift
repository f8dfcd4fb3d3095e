#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A learnt baseline of one metric on one port: what value to expect now and how far from it a
/// value may stray before it is an anomaly.
///
/// Two references are kept: an exponentially weighted mean and variance over all points (the
/// "recent normal"), and an hour-of-week profile of 168 buckets, each its own weighted mean and
/// variance, used once a week of data exists so a peak that recurs at the same hour every day or
/// week is expected rather than anomalous. Early points are averaged with weight 1/n (a running
/// mean) until the exponential weight takes over, so the first estimates are not biased towards
/// the first value. Outliers are learnt with a small weight and clipped to the band, so an
/// incident does not become the baseline while a lasting change of level is still accepted in time.
public struct AnomalyModel: Sendable, Hashable {
    /// A weighted mean and variance with a running-mean start.
    struct Moments: Sendable, Hashable {
        var mean = 0.0
        var variance = 0.0
        /// Sum of the weights learnt so far (the running-mean phase ends once 1/weight < alpha).
        var weight = 0.0
        var count = 0

        /// Learns `x`; an outlier (`clip` set) counts with weight `w` and no further from the
        /// mean than `clip`, so one incident moves neither the mean nor the deviation much, while
        /// a lasting change of level still widens the band step by step until it is accepted.
        mutating func learn(_ x: Double, alpha: Double, weight w: Double, clip: Double?) {
            weight += w
            count += 1
            if count == 1 {
                mean = x
                variance = 0
                return
            }
            let a = min(1, max(alpha * w, w / weight))
            var diff = x - mean
            if let clip { diff = max(-clip, min(clip, diff)) }
            mean += a * diff
            variance = (1 - a) * (variance + a * diff * diff)
        }

        var deviation: Double { variance > 0 ? variance.squareRoot() : 0 }
    }

    /// The model's verdict on one value.
    public struct Judgement: Sendable, Hashable {
        /// The value the model expected.
        public var expected: Double
        /// The deviation used (with its floor applied).
        public var deviation: Double
        /// `|value - expected| / deviation`.
        public var score: Double
        /// Outside `sigma` deviations; always false during warm-up.
        public var anomalous: Bool
        /// The warm-up has passed.
        public var warmedUp: Bool
        /// The hour-of-week profile gave `expected` (else the overall mean did).
        public var fromProfile: Bool
    }

    /// Seconds in a week: the profile is used once this much data exists.
    public static let week: Double = 7 * 86400
    static let buckets = 168

    /// Deviations from the expectation that make an anomaly.
    public let sigma: Double
    /// Seconds of learning before the model may call anything anomalous.
    public let warmup: Double
    /// Half-life of the overall mean, in seconds.
    public let halfLife: Double
    /// Half-life of a profile bucket, in seconds of that bucket's own hour.
    public let bucketHalfLife: Double
    /// The deviation never counts as less than this (nor less than `relativeFloor` of the mean),
    /// so a flat series does not fire on tiny noise.
    public let minimumDeviation: Double
    /// The deviation floor as a fraction of the expected value.
    public let relativeFloor: Double
    /// Weight of an outlier relative to a normal point.
    public let outlierWeight: Double
    /// Points the mean or a bucket needs before it is trusted (and before outliers are damped).
    public let minimumPoints: Int

    private var overall = Moments()
    private var profile: [Moments]
    /// Time of the first point learnt (warm-up and the week of the profile count from it).
    private(set) public var firstTime: Double?
    private var lastTime: Double?

    /// Makes an empty model; times are in seconds.
    public init(sigma: Double, warmup: Double, halfLife: Double = 3600, bucketHalfLife: Double = 1800,
                minimumDeviation: Double = 1, relativeFloor: Double = 0.005, outlierWeight: Double = 0.1,
                minimumPoints: Int = 12) {
        self.sigma = sigma
        self.warmup = warmup
        self.halfLife = halfLife
        self.bucketHalfLife = bucketHalfLife
        self.minimumDeviation = minimumDeviation
        self.relativeFloor = relativeFloor
        self.outlierWeight = outlierWeight
        self.minimumPoints = minimumPoints
        self.profile = Array(repeating: Moments(), count: Self.buckets)
    }

    /// Points learnt so far.
    public var count: Int { overall.count }

    /// The hour of the week (0..<168) a time falls in; weeks start at the epoch's hour 0.
    public static func hourOfWeek(_ time: Double) -> Int {
        let hour = Int((time / 3600).rounded(.down))
        let h = hour % buckets
        return h < 0 ? h + buckets : h
    }

    /// Judges `value` at `time` without learning it.
    public func judge(_ value: Double, at time: Double) -> Judgement {
        guard let firstTime, overall.count > 0 else {
            return Judgement(expected: value, deviation: minimumDeviation, score: 0, anomalous: false,
                             warmedUp: false, fromProfile: false)
        }
        var reference = overall
        var fromProfile = false
        if time - firstTime >= Self.week {
            let bucket = profile[Self.hourOfWeek(time)]
            if bucket.count >= minimumPoints {
                reference = bucket
                fromProfile = true
            }
        }
        let deviation = floored(reference)
        let score = abs(value - reference.mean) / deviation
        let warmedUp = time - firstTime >= warmup && overall.count >= minimumPoints
        return Judgement(expected: reference.mean, deviation: deviation, score: score,
                         anomalous: warmedUp && score > sigma, warmedUp: warmedUp, fromProfile: fromProfile)
    }

    /// Learns `value` at `time`. The overall mean and the hour's bucket each judge the point
    /// against themselves: what is an outlier to one may be the usual to the other (the daily peak).
    public mutating func learn(_ value: Double, at time: Double) {
        guard value.isFinite else { return }
        let dt = lastTime.map { max(0, time - $0) } ?? 0
        if firstTime == nil { firstTime = time }
        lastTime = time
        let hour = Self.hourOfWeek(time)
        learn(value, into: &overall, alpha: Self.alpha(dt, halfLife: halfLife))
        learn(value, into: &profile[hour], alpha: Self.alpha(dt, halfLife: bucketHalfLife))
    }

    private func learn(_ value: Double, into moments: inout Moments, alpha: Double) {
        let limit = sigma * floored(moments)
        let outlier = moments.count >= minimumPoints && abs(value - moments.mean) > limit
        moments.learn(value, alpha: alpha, weight: outlier ? outlierWeight : 1, clip: outlier ? limit : nil)
    }

    private func floored(_ m: Moments) -> Double {
        max(m.deviation, minimumDeviation, relativeFloor * abs(m.mean))
    }

    /// Judges, then learns: the per-sample call.
    public mutating func observe(_ value: Double, at time: Double) -> Judgement {
        let judgement = judge(value, at: time)
        learn(value, at: time)
        return judgement
    }

    /// The weight of a new point after `dt` seconds, for a given half-life.
    static func alpha(_ dt: Double, halfLife: Double) -> Double {
        guard dt > 0, halfLife > 0 else { return 0 }
        return 1 - exp2(-dt / halfLife)
    }
}

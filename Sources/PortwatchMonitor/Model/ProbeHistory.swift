/// Stored results of one probe target (`/api/v1/probes/{target}/history`).
public struct ProbeHistory: Sendable, Hashable {
    public var target: String
    /// 0 for raw results (one per probe), 3600 for hourly roll-ups.
    public var stepSeconds: Double
    public var points: [ProbePoint]

    public init(target: String, stepSeconds: Double, points: [ProbePoint]) {
        self.target = target
        self.stepSeconds = stepSeconds
        self.points = points
    }
}

/// One stored probe result, or an hour of them rolled up.
public struct ProbePoint: Sendable, Hashable {
    /// Epoch seconds: the probe's time, or the start of the hour.
    public var time: Double
    /// Probes the point stands for.
    public var probes: Int
    /// Fraction of those probes that were healthy (0 or 1 for a raw point).
    public var healthy: Double
    /// The remote state (raw points only).
    public var state: String?
    /// Milliseconds: the probe's min / median / max connect latency (raw), or the smallest, mean
    /// and largest of the hour's medians (roll-up); nil when nothing connected.
    public var latencyMin: Double?
    public var latencyMedian: Double?
    public var latencyMax: Double?
    /// Fraction of attempts that did not connect (mean over a roll-up).
    public var loss: Double
    /// Days the certificate had left (the fewest in a roll-up); nil without TLS.
    public var daysLeft: Int?

    public init(time: Double, probes: Int, healthy: Double, state: String?, latencyMin: Double?,
                latencyMedian: Double?, latencyMax: Double?, loss: Double, daysLeft: Int?) {
        self.time = time
        self.probes = probes
        self.healthy = healthy
        self.state = state
        self.latencyMin = latencyMin
        self.latencyMedian = latencyMedian
        self.latencyMax = latencyMax
        self.loss = loss
        self.daysLeft = daysLeft
    }
}

import PortwatchCore

/// One entry of the daemon's `probes:` section: a remote `host:port` checked every `interval`.
public struct ProbeConfig: Sendable, Hashable {
    /// What to probe; `target.text` is the key of results, history, metric labels and rules.
    public var target: ProbeTarget
    /// A name for messages and the dashboard (`db-primary`); rules may use it instead of the target.
    public var name: String?
    /// Time between two probes of the target (each one spread by a random jitter of up to ±10%).
    public var interval: Duration
    /// How to probe (timeout, count, TLS, send/expect, warn days).
    public var options: ProbeOptions

    /// Default time between probes.
    public static let defaultInterval: Duration = .seconds(30)
    /// Part of the interval by which each wait is spread at random, so probes of many targets
    /// (and of many daemons) do not march in step.
    public static let jitter = 0.1
    /// Seconds between the attempts of one probe when `count` is above 1.
    public static let attemptSpacing = 0.1

    public init(target: ProbeTarget, name: String? = nil, interval: Duration = ProbeConfig.defaultInterval,
                options: ProbeOptions = ProbeConfig.defaultOptions) {
        self.target = target
        self.name = name
        self.interval = interval
        self.options = options
    }

    /// The options a `probes:` entry starts from: one attempt, 5 s timeout, attempts 100 ms apart.
    public static var defaultOptions: ProbeOptions {
        var options = ProbeOptions()
        options.interval = attemptSpacing
        return options
    }

    /// The target as messages show it: `web (10.0.0.5:443)` or just the target.
    public var label: String { name.map { "\($0) (\(target.text))" } ?? target.text }
}

import PortwatchCore
#if canImport(Glibc)
import Glibc
#endif

/// The daemon's command-line flags, which win over the config file (at start and on reload).
public struct DaemonOverrides: Sendable, Hashable {
    public var database: String?
    public var listen: ListenAddress?
    public var interval: Duration?
    public var tokenFile: String?

    public init(database: String? = nil, listen: ListenAddress? = nil, interval: Duration? = nil, tokenFile: String? = nil) {
        self.database = database
        self.listen = listen
        self.interval = interval
        self.tokenFile = tokenFile
    }

    /// `config` with every given flag in place of its value.
    public func applied(to config: MonitorConfig) -> MonitorConfig {
        var c = config
        if let database { c.database.path = database }
        if let listen { c.listen = listen }
        if let interval { c.interval = interval }
        if let tokenFile { c.tokenFile = tokenFile }
        return c
    }
}

extension MonitorConfig {
    /// Shortest and longest sampling interval the daemon accepts.
    public static let intervalRange: ClosedRange<Duration> = .milliseconds(50) ... .seconds(3600)

    /// Throws (a usage error: exit 2) when the daemon must not start with this config: an
    /// interval out of range, or an HTTP listener reachable from other hosts without a token.
    public func checkStartable() throws(PortwatchError) {
        if !Self.intervalRange.contains(interval) {
            throw .usage("interval \(formatDuration(interval)): must be between 50ms and 1h")
        }
        if let problem = missingTokenProblem {
            throw .usage("listen \(problem); give one with --token-file FILE or token_file:")
        }
        // Only whether a usable token is there: its text is the HTTP layer's, and never logged.
        if let tokenFile, let problem = tokenFileProblem(tokenFile) {
            throw .usage("token file \(problem)")
        }
    }
}

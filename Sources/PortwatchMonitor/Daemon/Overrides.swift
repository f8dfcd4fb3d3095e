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
        guard let tokenFile else {
            if !listen.isLoopback {
                throw .usage("listen \(listen) is not a loopback address: a token file is required "
                             + "(--token-file FILE or token_file: in the config)")
            }
            return
        }
        // Only whether a token is there: its text is the HTTP layer's, and never logged.
        guard let text = readFileString(tokenFile, limit: 4096) else {
            throw .usage("token file \(tokenFile): cannot be read")
        }
        if text.allSatisfy(\.isWhitespace) { throw .usage("token file \(tokenFile): is empty") }
    }
}

extension ListenAddress {
    /// Parses `HOST:PORT` or `[IPV6]:PORT` (`--listen`, `listen:`); nil when malformed.
    public init?(hostPort text: String) {
        let host: Substring
        let port: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":") else { return nil }
            host = text[text.index(after: text.startIndex)..<close]
            port = text[text.index(close, offsetBy: 2)...]
            guard host.contains(":") else { return nil }
        } else {
            guard let colon = text.lastIndex(of: ":") else { return nil }
            host = text[..<colon]
            port = text[text.index(after: colon)...]
            guard !host.contains(":") else { return nil }
        }
        guard !host.isEmpty, host.allSatisfy({ !$0.isWhitespace && $0 != "/" }),
              !port.isEmpty, port.allSatisfy({ $0.isASCII && $0.isNumber }), let number = UInt16(port) else { return nil }
        self.init(host: String(host), port: number)
    }
}

import Hummingbird
import PortwatchCore

/// Path and query values of the API, checked: each bad value is a 400 naming the parameter.
enum APIParameters {
    /// `{protocol}`: `tcp` or `udp`.
    static func proto(_ text: String?) throws(APIError) -> TransportProtocol {
        guard let text, let p = TransportProtocol(rawValue: text.lowercased()) else {
            throw .badRequest("invalid protocol '\(printable(text ?? ""))': expected tcp or udp")
        }
        return p
    }

    /// `{port}` or `port=`: a number from 1 to 65535.
    static func port(_ text: some StringProtocol, name: String = "port") throws(APIError) -> UInt16 {
        guard let n = UInt16(text), n > 0 else {
            throw .badRequest("invalid \(name) '\(printable(String(text)))': expected a number from 1 to 65535")
        }
        return n
    }

    /// A positive duration (`since=1h`, `step=1m`), or `fallback` when the parameter is absent.
    static func duration(_ request: Request, _ name: String, fallback: Duration?) throws(APIError) -> Duration? {
        guard let text = request.uri.queryParameters[Substring(name)].map(String.init) else { return fallback }
        let d: Duration
        do {
            d = try parseDuration(text)
        } catch {
            throw .badRequest("invalid \(name): \(error.message)")
        }
        guard d > .zero else { throw .badRequest("invalid \(name) '\(printable(text))': must be more than zero") }
        return d
    }

    /// `netns=`: a network namespace as history keys it (`HistoryNamespace.parse`); nil when
    /// absent or `host` (the daemon's own).
    static func netns(_ request: Request) throws(APIError) -> String? {
        guard let text = request.uri.queryParameters["netns"].map(String.init) else { return nil }
        do {
            return try HistoryNamespace.parse(text, option: "netns")
        } catch {
            throw .badRequest("invalid \(error.message)")
        }
    }

    /// `netns=` of the live views (`/api/v1/ports`, `/api/v1/events`): nil when absent (every
    /// namespace), `.host` for `host`, else the label (`HistoryNamespace.parse`).
    static func netnsFilter(_ request: Request) throws(APIError) -> NamespaceFilter? {
        guard request.uri.queryParameters["netns"] != nil else { return nil }
        return NamespaceFilter(label: try netns(request))
    }

    /// A count from 1 to `max` (`limit=`), or `fallback` when absent.
    static func count(_ request: Request, _ name: String, fallback: Int, max: Int) throws(APIError) -> Int {
        guard let text = request.uri.queryParameters[Substring(name)].map(String.init) else { return fallback }
        guard let n = Int(text), n >= 1, n <= max else {
            throw .badRequest("invalid \(name) '\(printable(text))': expected a number from 1 to \(max)")
        }
        return n
    }

    /// The value as it may be echoed in an error: short, without control characters.
    static func printable(_ text: String) -> String {
        var out = ""
        for scalar in text.unicodeScalars.prefix(40) {
            out.unicodeScalars.append(scalar.value < 0x20 || scalar.value == 0x7F ? "?" : scalar)
        }
        return text.unicodeScalars.count > 40 ? out + "..." : out
    }
}

/// A duration in seconds, as a Double (history and event times are epoch seconds).
func apiSeconds(_ d: Duration) -> Double {
    let (s, atto) = d.components
    return Double(s) + Double(atto) / 1e18
}

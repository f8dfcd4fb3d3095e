import AsyncHTTPClient
import Logging
import NIOCore
import NIOHTTP1

/// Why an HTTP delivery failed for good.
public enum DeliveryError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The receiver answered with a status that retrying cannot fix (4xx other than 408/429).
    case rejected(status: Int)
    /// Every attempt failed; the last failure.
    case gaveUp(attempts: Int, last: String)

    public var description: String {
        switch self {
        case .rejected(let status): "rejected with HTTP \(status)"
        case .gaveUp(let attempts, let last): "gave up after \(attempts) attempts: \(last)"
        }
    }
}

/// JSON POSTs with a timeout per attempt and bounded retries with exponential backoff: the
/// shared delivery of the webhook and Alertmanager channels.
public struct HTTPPoster: Sendable {
    /// Time one attempt may take (connect included).
    public var timeout: Duration
    /// Attempts in all (the first one included).
    public var attempts: Int
    /// Wait before the first retry; doubled after each, up to `maxBackoff`.
    public var backoff: Duration
    /// The longest wait between attempts.
    public var maxBackoff: Duration
    let client: HTTPClient
    let logger: Logger

    /// Makes a poster over `client` (the shared AsyncHTTPClient by default).
    public init(client: HTTPClient = .shared, timeout: Duration = .seconds(5), attempts: Int = 5,
                backoff: Duration = .milliseconds(500), maxBackoff: Duration = .seconds(30),
                logger: Logger = Logger(label: "portwatch.alerts")) {
        self.client = client
        self.timeout = timeout
        self.attempts = max(1, attempts)
        self.backoff = backoff
        self.maxBackoff = maxBackoff
        self.logger = logger
    }

    /// POSTs `body` to `url`; returns once a 2xx answer came, throws `DeliveryError` otherwise.
    public func post(_ body: String, to url: String, channel: String) async throws {
        var delay = backoff
        var last = ""
        for attempt in 1...attempts {
            do {
                let status = try await once(body, to: url)
                if (200..<300).contains(status) { return }
                last = "HTTP \(status)"
                if (400..<500).contains(status), status != 408, status != 429 {
                    throw DeliveryError.rejected(status: status)
                }
            } catch let error as DeliveryError {
                throw error
            } catch is CancellationError {
                throw CancellationError()
            } catch {
                last = "\(error)"
            }
            try Task.checkCancellation()
            guard attempt < attempts else { break }
            logger.debug("alert delivery failed, retrying", metadata: [
                "channel": "\(channel)", "attempt": "\(attempt)", "error": "\(last)", "retry_in": "\(delay)",
            ])
            try await Task.sleep(for: delay)
            delay = min(delay * 2, maxBackoff)
        }
        throw DeliveryError.gaveUp(attempts: attempts, last: last)
    }

    private func once(_ body: String, to url: String) async throws -> Int {
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.headers.add(name: "User-Agent", value: "portwatch")
        request.body = .bytes(ByteBuffer(string: body))
        let (seconds, atto) = timeout.components
        let amount = TimeAmount.nanoseconds(seconds * 1_000_000_000 + atto / 1_000_000_000)
        let response = try await client.execute(request, timeout: amount, logger: nil)
        // Drain the answer so the connection goes back to the pool.
        _ = try await response.body.collect(upTo: 1 << 20)
        return Int(response.status.code)
    }
}

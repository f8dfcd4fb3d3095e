import Synchronization

/// Copies every stream message to each subscriber of `/api/v1/stream`.
///
/// Each subscriber has a bounded buffer that keeps the newest messages: a reader that falls
/// behind loses its oldest messages (counted in `dropped`) instead of holding snapshots in memory
/// or slowing the sampler down.
public final class StreamFanout: Sendable {
    private struct Subscribers {
        var next: UInt64 = 0
        var continuations: [UInt64: AsyncStream<StreamMessage>.Continuation] = [:]
        var dropped: UInt64 = 0
    }

    private let subscribers = Mutex(Subscribers())
    /// Messages each subscriber may have waiting.
    public let bufferSize: Int

    public init(bufferSize: Int = 16) { self.bufferSize = max(1, bufferSize) }

    /// A new subscription; it ends when the consumer stops iterating (or drops the stream).
    public func subscribe() -> AsyncStream<StreamMessage> {
        let (stream, continuation) = AsyncStream.makeStream(of: StreamMessage.self,
                                                            bufferingPolicy: .bufferingNewest(bufferSize))
        let id = subscribers.withLock { s in
            s.next += 1
            s.continuations[s.next] = continuation
            return s.next
        }
        continuation.onTermination = { [weak self] _ in
            _ = self?.subscribers.withLock { $0.continuations.removeValue(forKey: id) }
        }
        return stream
    }

    /// Sends a message to every subscriber without waiting for any of them.
    ///
    /// A sample goes out without its snapshot's socket list: the stream shows ports, and a
    /// reader's buffered samples must not each hold every socket of the host (tens of MB at
    /// 50,000 connections).
    public func send(_ message: StreamMessage) {
        let targets = subscribers.withLock { Array($0.continuations.values) }
        if targets.isEmpty { return }
        var message = message
        if case .sample(var latest) = message, !latest.snapshot.sockets.isEmpty {
            latest.snapshot.sockets = []
            message = .sample(latest)
        }
        var lost: UInt64 = 0
        for c in targets {
            if case .dropped(_) = c.yield(message) { lost += 1 }
        }
        if lost > 0 { subscribers.withLock { $0.dropped += lost } }
    }

    /// Ends every subscription (on shutdown: SSE responses complete).
    public func finishAll() {
        let targets = subscribers.withLock { s in
            defer { s.continuations.removeAll() }
            return Array(s.continuations.values)
        }
        for c in targets { c.finish() }
    }

    /// Subscribers now.
    public var count: Int { subscribers.withLock { $0.continuations.count } }
    /// Messages dropped, over all subscribers, because a reader fell behind.
    public var dropped: UInt64 { subscribers.withLock { $0.dropped } }
}

#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import ServiceLifecycle

/// Calls `reload` on every SIGHUP until graceful shutdown.
///
/// SIGHUP's default action ends the process, so the daemon ignores it before its services start
/// (`ignoreHangup()`); a dispatch source still sees each one.
public struct ReloadService: Service {
    private let reload: @Sendable () async -> Void

    public init(reload: @escaping @Sendable () async -> Void) { self.reload = reload }

    /// Stops SIGHUP from ending the process (the dispatch source still sees it).
    public static func ignoreHangup() { signal(SIGHUP, SIG_IGN) }

    public func run() async throws {
        Self.ignoreHangup()
        let (hangups, continuation) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        let source = DispatchSource.makeSignalSource(signal: SIGHUP, queue: .global())
        source.setEventHandler { continuation.yield() }
        source.resume()
        defer {
            source.cancel()
            continuation.finish()
        }
        for await _ in hangups.cancelOnGracefulShutdown() {
            await reload()
        }
    }
}

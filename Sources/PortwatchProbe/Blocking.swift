import Dispatch
import PortwatchCore

/// Runs a blocking call (getaddrinfo, a poll loop) on a Dispatch thread so that it never holds
/// a thread of Swift's cooperative pool, which the daemon's other tasks need.
func offPool<T: Sendable>(_ body: @escaping @Sendable () throws(PortwatchError) -> T) async throws(PortwatchError) -> T {
    let result: Result<T, PortwatchError> = await withCheckedContinuation { continuation in
        DispatchQueue.global().async {
            do throws(PortwatchError) {
                continuation.resume(returning: .success(try body()))
            } catch {
                continuation.resume(returning: .failure(error))
            }
        }
    }
    return try result.get()
}

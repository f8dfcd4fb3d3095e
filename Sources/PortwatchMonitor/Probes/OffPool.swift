import Foundation
import Synchronization

/// Runs blocking socket work (getaddrinfo, connect with poll, recv) on a thread of its own, so it
/// never holds one of the few cooperative threads the sampler and the HTTP server run on.
enum OffPool {
    /// The body's result, or nil when the calling task is cancelled first (the thread then
    /// finishes on its own, within the body's own timeout, and its result is dropped).
    static func run<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T? {
        let once = Once<T>()
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<T?, Never>) in
                once.arm(continuation)
                let thread = Thread { once.resume(with: body()) }
                thread.name = "portwatch.probe"
                thread.start()
            }
        } onCancel: {
            once.resume(with: nil)
        }
    }

    /// Resumes the continuation exactly once, whichever of the thread and the cancellation comes
    /// first; a cancellation that comes before the continuation exists is remembered.
    private final class Once<T: Sendable>: Sendable {
        private enum Slot {
            case waiting
            case armed(CheckedContinuation<T?, Never>)
            case cancelledEarly
            case done
        }

        private let slot = Mutex<Slot>(.waiting)

        func arm(_ continuation: CheckedContinuation<T?, Never>) {
            let resumeNow = slot.withLock { s -> Bool in
                if case .cancelledEarly = s {
                    s = .done
                    return true
                }
                s = .armed(continuation)
                return false
            }
            if resumeNow { continuation.resume(returning: nil) }
        }

        func resume(with value: T?) {
            let continuation = slot.withLock { s -> CheckedContinuation<T?, Never>? in
                switch s {
                case .armed(let c):
                    s = .done
                    return c
                case .waiting:
                    if value == nil { s = .cancelledEarly }
                    return nil
                case .cancelledEarly, .done:
                    return nil
                }
            }
            continuation?.resume(returning: value)
        }
    }
}

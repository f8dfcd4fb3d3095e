import Foundation
import PortwatchCore
import Synchronization

/// Thrown by `offPool` when the calling task was cancelled before the blocking call ended.
struct ProbeCancelled: Error {}

/// Runs a blocking call (getaddrinfo, a poll loop) on a thread of its own so that it never holds
/// a thread of Swift's cooperative pool, which the daemon's other tasks need. A cancelled caller
/// returns at once (`ProbeCancelled`): the thread ends within the call's own timeout and its
/// result is dropped — the daemon's shutdown never waits for a silent target.
func offPool<T: Sendable>(_ body: @escaping @Sendable () throws(PortwatchError) -> T) async throws -> T {
    let once = ResumeOnce<Result<T, PortwatchError>>()
    let outcome: Result<T, PortwatchError>? = await withTaskCancellationHandler {
        await withCheckedContinuation { (continuation: CheckedContinuation<Result<T, PortwatchError>?, Never>) in
            once.arm(continuation)
            let thread = Thread {
                do throws(PortwatchError) {
                    once.resume(with: .success(try body()))
                } catch {
                    once.resume(with: .failure(error))
                }
            }
            thread.name = "portwatch.probe"
            thread.start()
        }
    } onCancel: {
        once.resume(with: nil)
    }
    guard let outcome else { throw ProbeCancelled() }
    return try outcome.get()
}

/// Resumes a continuation exactly once, whichever of the worker and the cancellation comes first;
/// a cancellation that comes before the continuation exists is remembered.
private final class ResumeOnce<T: Sendable>: Sendable {
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

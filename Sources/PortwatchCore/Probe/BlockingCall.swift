import Dispatch
import Synchronization

/// Runs a blocking call that has no timeout of its own (getaddrinfo) with one.
enum BlockingCall {
    /// The call's result, or nil when it did not return within `timeout` seconds. A late call
    /// finishes on its own thread and its result is dropped.
    static func run<T: Sendable>(timeout: Double, _ body: @escaping @Sendable () -> T) -> T? {
        let box = Box<T>()
        let done = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            let value = body()
            box.value.withLock { $0 = value }
            done.signal()
        }
        let nanos = Int(max(0, min(timeout, 86_400)) * 1e9)
        guard done.wait(timeout: .now() + .nanoseconds(nanos)) == .success else { return nil }
        return box.value.withLock { $0 }
    }

    /// Shared between the caller and the worker thread; the Mutex makes that safe.
    private final class Box<T: Sendable>: Sendable {
        let value = Mutex<T?>(nil)
    }
}

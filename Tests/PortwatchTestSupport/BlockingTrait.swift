// `.blocking`: a test whose body blocks its thread runs on a thread of its own, off Swift's
// cooperative pool.
//
// The pool has one thread per core, two on CI, and every test target shares it in the one test
// process. A synchronous test that spawns `portwatch` and waits for it holds a pool thread for
// seconds; two of them at once leave no thread for the async tests (the in-process daemon, its HTTP
// server, alert timers), which then miss their own deadlines. Under `.blocking` a test case first
// waits for a permit without holding any thread, then runs under a task executor that owns one
// thread, started for that case and stopped after it.

import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Runs each test case on a dedicated thread instead of the cooperative pool, at most
/// `BlockingGate.limit` at a time. On a suite it applies to every test inside it. Child tasks a body
/// starts (`async let`, task groups) inherit the preference and so share that one thread.
public struct BlockingTrait: TestTrait, SuiteTrait, TestScoping {
    public var isRecursive: Bool { true }

    /// The trait carries no state; `.blocking` is the way to spell it.
    public init() {}

    public func provideScope(for test: Test, testCase: Test.Case?,
                             performing function: @Sendable () async throws -> Void) async throws {
        try await BlockingGate.shared.run(function)
    }
}

extension Trait where Self == BlockingTrait {
    /// The test blocks its thread (child processes, sockets, sleeps): keep it off the cooperative pool.
    public static var blocking: Self { Self() }
}

/// Lets a bounded number of blocking bodies run at once, each on a thread of its own. Waiting for a
/// turn suspends the task; it never blocks a thread.
public actor BlockingGate {
    /// Two: that is how many blocking CLI tests ran at once when the pool's two threads were the
    /// bound, and each one spawns `portwatch` and helper processes that want a core; more at once
    /// on the 2-core CI machine only stretches every test's waits toward their timeouts.
    public static let limit = 2

    /// The gate every `.blocking` test goes through, one for the whole test process.
    public static let shared = BlockingGate(limit: limit)

    /// Set while a body runs under a gate, so a test marked `.blocking` inside a `.blocking` suite
    /// takes one permit and one thread, not two.
    @TaskLocal private static var isInside = false

    /// Permits free now.
    public private(set) var available: Int
    private var queue: [CheckedContinuation<Void, Never>] = []

    /// Bodies waiting for a permit.
    public var waiting: Int { queue.count }

    /// A gate letting `limit` bodies run at once.
    public init(limit: Int) {
        precondition(limit > 0, "a gate needs at least one permit")
        available = limit
    }

    /// Waits for a permit, runs `body` on a fresh dedicated thread, then gives the permit back,
    /// whether `body` returned or threw.
    public nonisolated func run<T: Sendable>(_ body: @Sendable () async throws -> T) async throws -> T {
        if Self.isInside { return try await body() }
        await acquire()
        let result: Result<T, any Error>
        do {
            result = .success(try await Self.$isInside.withValue(true) { try await OwnThreadExecutor.run(body) })
        } catch {
            result = .failure(error)
        }
        await release()
        return try result.get()
    }

    private func acquire() async {
        if available > 0 {
            available -= 1
            return
        }
        await withCheckedContinuation { queue.append($0) }
    }

    /// FIFO: the longest waiter gets the permit handed over directly.
    private func release() {
        if queue.isEmpty {
            available += 1
        } else {
            queue.removeFirst().resume()
        }
    }
}

/// A task executor with one thread of its own: nonisolated async code of a task that prefers it
/// (and the synchronous calls that code makes) runs on that thread, not on the cooperative pool.
public final class OwnThreadExecutor: TaskExecutor, @unchecked Sendable {
    // @unchecked: `jobs`, `stopping`, `exited` and `onExit` are only read or written while
    // `condition` is locked; `thread` is written once in `init`, before anything can use it.
    private let condition = NSCondition()
    private var jobs: [UnownedJob] = []
    private var stopping = false
    private var exited = false
    private var onExit: CheckedContinuation<Void, Never>?
    private var thread = pthread_t()

    /// The name every executor's thread carries (pthread names hold at most 15 bytes).
    public static let threadName = "pw-blocking"

    /// Runs `body` with a new executor as the task's preference; its thread has ended when this returns.
    public static func run<T: Sendable>(_ body: () async throws -> T) async throws -> T {
        let executor = try OwnThreadExecutor()
        let result: Result<T, any Error>
        do {
            result = .success(try await withTaskExecutorPreference(executor) { try await body() })
        } catch {
            result = .failure(error)
        }
        await executor.stop()
        return try result.get()
    }

    private init() throws {
        let retained = Unmanaged.passRetained(self).toOpaque()
        let status = pthread_create(&thread, nil, { argument in
            let executor = Unmanaged<OwnThreadExecutor>.fromOpaque(argument!).takeRetainedValue()
            executor.work()
            return nil
        }, retained)
        guard status == 0 else {
            Unmanaged<OwnThreadExecutor>.fromOpaque(retained).release()
            throw ThreadStartFailure(code: status)
        }
    }

    private func work() {
        // Foundation names the calling thread for the kernel (comm) only from inside it; a new
        // thread otherwise keeps its creator's name, a pool thread's.
        Thread.current.name = Self.threadName
        while let job = next() {
            job.runSynchronously(on: asUnownedTaskExecutor())
        }
        condition.lock()
        exited = true
        let waiter = onExit
        onExit = nil
        condition.unlock()
        waiter?.resume()
    }

    /// Queues `job` for the thread.
    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        condition.lock()
        jobs.append(job)
        condition.signal()
        condition.unlock()
    }

    /// The next job; nil once `stop()` was asked for and every queued job has run.
    private func next() -> UnownedJob? {
        condition.lock()
        defer { condition.unlock() }
        while jobs.isEmpty && !stopping { condition.wait() }
        return jobs.isEmpty ? nil : jobs.removeFirst()
    }

    /// Ends the thread after its queued jobs. Waits for it to leave its loop by suspending, not by
    /// joining at once: the caller may still be on this very thread, finishing its last job. The
    /// join afterwards runs elsewhere (the task has no preference any more) and only waits for the
    /// thread function's return.
    private func stop() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            condition.lock()
            stopping = true
            if exited {
                condition.unlock()
                continuation.resume()
            } else {
                onExit = continuation
                condition.signal()
                condition.unlock()
            }
        }
        pthread_join(thread, nil)
    }
}

/// pthread_create failed (EAGAIN: the process or system is out of threads).
public struct ThreadStartFailure: Error, CustomStringConvertible {
    /// The error number pthread_create returned.
    public var code: Int32
    public var description: String { "cannot start a thread for a blocking test: \(String(cString: strerror(code)))" }
}

// `.blocking` keeps blocking test bodies off the cooperative pool. Checked on the kernel's record
// of the running thread (its `comm` name; the pool's threads are libdispatch workers named after
// their queue), and by a pool task that has to make progress while such bodies block.

import Foundation
import Testing
import PortwatchTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// The kernel's name of the calling thread.
private func kernelThreadName() -> String {
    let comm = (try? String(contentsOfFile: "/proc/thread-self/comm", encoding: .utf8)) ?? ""
    return comm.trimmingCharacters(in: .whitespacesAndNewlines)
}

/// The calling thread's id, from the /proc/thread-self link ("PID/task/TID").
private func kernelThreadID() -> String {
    let link = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/thread-self")) ?? ""
    return link.split(separator: "/").last.map(String.init) ?? ""
}

/// Blocks the calling thread until `semaphore` is signalled; false when it gave up after a minute.
private func blockUntilSignalled(_ semaphore: DispatchSemaphore) -> Bool {
    semaphore.wait(timeout: .now() + 60) == .success
}

/// Counts bodies that entered; async waiters resume once the count reaches their threshold.
private final class Entries: @unchecked Sendable {
    // @unchecked: every stored property is read and written with `lock` held.
    private let lock = NSLock()
    private var entered = 0
    private var inside = 0
    private var mostInside = 0
    private var waiters: [(count: Int, continuation: CheckedContinuation<Void, Never>)] = []

    func enter() {
        lock.lock()
        entered += 1
        inside += 1
        mostInside = max(mostInside, inside)
        let ready = waiters.filter { $0.count <= entered }
        waiters.removeAll { $0.count <= entered }
        lock.unlock()
        for waiter in ready { waiter.continuation.resume() }
    }

    func leave() {
        lock.withLock { inside -= 1 }
    }

    var most: Int { lock.withLock { mostInside } }

    func reached(_ count: Int) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            lock.lock()
            if entered >= count {
                lock.unlock()
                continuation.resume()
            } else {
                waiters.append((count, continuation))
                lock.unlock()
            }
        }
    }
}

@Suite("blocking trait: a suite's tests run off the cooperative pool", .blocking)
struct BlockingTraitSuiteTests {
    let builtOn = kernelThreadName()

    @Test func aTestAndItsSuiteInstanceRunOnADedicatedThread() {
        #expect(builtOn == OwnThreadExecutor.threadName)
        #expect(kernelThreadName() == OwnThreadExecutor.threadName)
    }

    @Test(arguments: 0..<3)
    func everyCaseOfAParameterizedTestToo(_ index: Int) {
        #expect(kernelThreadName() == OwnThreadExecutor.threadName, "case \(index)")
    }

    @Test(.blocking) func markedAgainInsideAMarkedSuiteItStillRuns() {
        #expect(kernelThreadName() == OwnThreadExecutor.threadName)
    }
}

@Suite("blocking trait: the gate and its threads")
struct BlockingGateTests {
    @Test(.blocking) func aSingleMarkedTestRunsOnADedicatedThread() {
        #expect(kernelThreadName() == OwnThreadExecutor.threadName)
    }

    /// The other side of the name check: pool threads are not named like the dedicated ones.
    @Test func anUnmarkedSynchronousTestRunsOnThePool() {
        #expect(kernelThreadName() != OwnThreadExecutor.threadName)
    }

    /// As many blocked bodies as the machine has cores would take every pool thread; the pool task
    /// that releases them can only run if they are elsewhere (without the gate it never gets a
    /// thread, and every body gives up after its minute).
    @Test func aPoolTaskMakesProgressWhileBlockingBodiesWait() async throws {
        let bodies = max(2, Int(sysconf(Int32(_SC_NPROCESSORS_CONF))))
        let gate = BlockingGate(limit: bodies)
        let entries = Entries()
        let release = DispatchSemaphore(value: 0)
        let released = try await withThrowingTaskGroup(of: Bool.self) { group in
            for _ in 0..<bodies {
                group.addTask {
                    try await gate.run {
                        entries.enter()
                        defer { entries.leave() }
                        return blockUntilSignalled(release)
                    }
                }
            }
            group.addTask {
                await entries.reached(bodies)
                for _ in 0..<bodies { release.signal() }
                return true
            }
            return try await group.reduce(into: [Bool]()) { $0.append($1) }
        }
        #expect(released == Array(repeating: true, count: bodies + 1))
    }

    /// A gate of two lets two bodies in; the others wait for a permit (holding no thread) and get
    /// one only as a body leaves.
    @Test func atMostTheLimitRunAtOnce() async throws {
        let limit = 2, bodies = 5
        let gate = BlockingGate(limit: limit)
        let entries = Entries()
        let release = DispatchSemaphore(value: 0)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<bodies {
                group.addTask {
                    let signalled = try await gate.run {
                        entries.enter()
                        defer { entries.leave() }
                        return blockUntilSignalled(release)
                    }
                    #expect(signalled)
                }
            }
            await entries.reached(limit)
            for _ in 0..<10_000 {
                if await gate.waiting == bodies - limit { break }
                await Task.yield()
            }
            #expect(await gate.waiting == bodies - limit)
            #expect(entries.most == limit)
            for _ in 0..<bodies { release.signal() }
            try await group.waitForAll()
        }
        #expect(entries.most == limit)
        #expect(await gate.available == limit)
    }

    @Test func aThrowingBodyGivesItsPermitBack() async throws {
        struct Expected: Error {}
        let gate = BlockingGate(limit: 1)
        await #expect(throws: Expected.self) {
            try await gate.run { () throws -> Void in throw Expected() }
        }
        #expect(await gate.available == 1)
    }

    @Test func theDedicatedThreadHasEndedWhenTheBodyReturns() async throws {
        let (name, id) = try await OwnThreadExecutor.run { (kernelThreadName(), kernelThreadID()) }
        #expect(name == OwnThreadExecutor.threadName)
        #expect(!id.isEmpty)
        #expect(!FileManager.default.fileExists(atPath: "/proc/self/task/\(id)"))
    }
}

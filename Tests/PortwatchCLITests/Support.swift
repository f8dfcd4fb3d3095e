// Helpers for the CLI integration tests, one concern per file: errors, time and polling (here),
// GlibcExtensions, TestEnvironment, ChildProcess, PortwatchRunner, JSONAccess, TestSockets,
// PythonChildren, NetworkNamespaces.
//
// Rules every helper keeps, so tests can run in parallel with each other and with other suites:
// - every descriptor the test process opens is close-on-exec, and children are spawned with
//   every descriptor above stderr closed, so no child ever inherits another test's socket;
// - ports come from the kernel (bind to port 0) or from `portwatch free`, never hard-coded
//   (except inside namespaces the tests create, which nothing else shares);
// - every wait is bounded in time, every loop in count;
// - children are killed and reaped, namespaces deleted, by the caller's `defer`.

import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

// MARK: - Errors and time

/// A helper failed: the message says what and why (errno text included).
struct SupportError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
    static func errno(_ what: String, _ code: Int32 = Glibc.errno) -> SupportError {
        SupportError("\(what): \(String(cString: strerror(code))) (errno \(code))")
    }
}

/// Monotonic seconds.
func monotonic() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

func sleepSeconds(_ seconds: Double) {
    if seconds > 0 { usleep(UInt32(seconds * 1_000_000)) }
}

/// Polls `condition` every `interval` until it holds or `timeout` passes; returns its last value.
@discardableResult
func poll(timeout: Double, interval: Double = 0.05, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = monotonic() + timeout
    for _ in 0..<10_000 {
        if try condition() { return true }
        if monotonic() >= deadline { return false }
        sleepSeconds(min(interval, max(0, deadline - monotonic())))
    }
    return false
}

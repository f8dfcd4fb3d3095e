// Running the built portwatch binary and reading its results.

import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

// MARK: - Running portwatch

/// What one run of `portwatch` produced.
struct PortwatchResult: CustomStringConvertible {
    var arguments: [String]
    var stdout: String
    var stderr: String
    /// The exit code; -1 when it had to be killed at the timeout.
    var status: Int32
    var timedOut: Bool
    /// Wall time of the run.
    var seconds: Double

    /// stdout parsed as one JSON object; nil (and a recorded issue) when it is not one.
    func json(sourceLocation: SourceLocation = #_sourceLocation) -> [String: Any]? {
        guard let data = stdout.data(using: .utf8),
              let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            Issue.record("not a JSON object from portwatch \(arguments.joined(separator: " ")): \(self)",
                         sourceLocation: sourceLocation)
            return nil
        }
        return object
    }

    /// The stderr lines (a trailing newline does not make an extra empty line).
    var stderrLines: [Substring] {
        var lines = stderr.split(separator: "\n", omittingEmptySubsequences: false)
        if lines.last == "" { lines.removeLast() }
        return lines
    }

    var description: String {
        "exit \(status)\(timedOut ? " (timed out)" : "") after \(String(format: "%.2f", seconds))s; "
            + "stdout: \(stdout.prefix(2000)) stderr: \(stderr.prefix(2000))"
    }
}

/// The environment portwatch runs with: ours, minus the test-only switches, plus `extra`.
func portwatchEnvironment(_ extra: [String: String] = [:]) -> [String: String] {
    var env = ProcessInfo.processInfo.environment
    env.removeValue(forKey: "PORTWATCH_SOCKET_SOURCE")
    env.removeValue(forKey: "PORTWATCH_RECORD_NETLINK")
    env["NO_COLOR"] = "1"
    for (k, v) in extra { env[k] = v }
    return env
}

/// A portwatch run in progress (for `wait`, where the test acts while it runs).
struct PortwatchRun: @unchecked Sendable {
    let child: Child
    let arguments: [String]
    let started: Double

    func finish(timeout: Double = 15) -> PortwatchResult {
        let r = child.collect(timeout: timeout)
        return PortwatchResult(arguments: arguments, stdout: String(decoding: r.stdout, as: UTF8.self),
                               stderr: String(decoding: r.stderr, as: UTF8.self),
                               status: r.status == nil ? -1 : exitCode(r.status),
                               timedOut: r.status == nil, seconds: monotonic() - started)
    }
}

/// Starts `portwatch ARGS` (inside network namespace `netns` when given, through `ip netns exec`).
func startPortwatch(_ arguments: [String], environment: [String: String] = [:],
                    netns: String? = nil) throws -> PortwatchRun {
    let started = monotonic()
    let child: Child
    if let netns {
        guard let ip = TestEnv.ip else { throw SupportError("ip not found") }
        child = try Child.spawn(ip, ["netns", "exec", netns, TestEnv.portwatchPath] + arguments,
                                environment: portwatchEnvironment(environment))
    } else {
        child = try Child.spawn(TestEnv.portwatchPath, arguments, environment: portwatchEnvironment(environment))
    }
    return PortwatchRun(child: child, arguments: arguments, started: started)
}

/// Runs `portwatch ARGS` to completion (killed after `timeout`), stdin /dev/null.
func runPortwatch(_ arguments: [String], timeout: Double = 15, environment: [String: String] = [:],
                  netns: String? = nil) -> PortwatchResult {
    do {
        return try startPortwatch(arguments, environment: environment, netns: netns).finish(timeout: timeout)
    } catch {
        return PortwatchResult(arguments: arguments, stdout: "", stderr: "spawn failed: \(error)",
                               status: -1, timedOut: false, seconds: 0)
    }
}

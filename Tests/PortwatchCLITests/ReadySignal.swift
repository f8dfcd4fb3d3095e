// Waiting for portwatch's own readiness signal (`--ready-file`) instead of sleeping: a sampled
// view (`ports --sample`, `check --sample`, `top`) creates the file right after its baseline
// snapshot, so whatever the test does next falls inside the measured window, however slowly
// the loaded machine started the process.

import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

private let readyCounter = Counter()

/// A path for `--ready-file` that no other test uses (and that does not exist yet).
func freshReadyFile() -> String {
    let path = "/tmp/pw-ready-\(getpid())-\(readyCounter.next())"
    unlink(path)
    return path
}

/// Starts `portwatch ARGS --ready-file PATH` and returns once PATH exists (the baseline is
/// taken). Throws, with what portwatch printed, when it exits first or `timeout` passes.
func startPortwatchWhenReady(_ arguments: [String], environment: [String: String] = [:], netns: String? = nil,
                             timeout: Double = 60) throws -> PortwatchRun {
    let path = freshReadyFile()
    let run = try startPortwatch(arguments + ["--ready-file", path], environment: environment, netns: netns)
    defer { unlink(path) }
    var exited = false
    let ready = poll(timeout: timeout, interval: 0.01) {
        if access(path, F_OK) == 0 { return true }
        exited = run.child.reap()
        return exited
    }
    if !ready || exited {
        let r = run.finish(timeout: 5)
        throw SupportError("portwatch \(arguments.joined(separator: " ")) gave no readiness signal: \(r)")
    }
    return run
}

// portwatch-bench: benchmark helpers that are not part of the CLI (see benchmarks/).
import ArgumentParser
import PortwatchCore
#if canImport(Glibc)
import Glibc
#endif

@main
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "portwatch-bench",
        abstract: "Benchmarks of portwatch's parts that the CLI does not expose.",
        subcommands: [HistoryFill.self, HistoryWriteLoop.self, MetricsScrape.self, NetnsSample.self]
    )
}

/// Parses a duration flag into seconds, or fails with the flag's name.
func seconds(_ text: String, option: String) throws -> Double {
    do {
        let (s, atto) = try parseDuration(text).components
        return Double(s) + Double(atto) / 1e18
    } catch {
        throw ValidationError("\(option): \(error.message)")
    }
}

/// Wall-clock seconds since the epoch.
func wallClock() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// Monotonic seconds, for timing.
func monotonicClock() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// Prints a line and flushes, so a reader of a pipe sees it at once (progress lines are read by tests).
func printFlushed(_ line: String) {
    var bytes = Array((line + "\n").utf8)
    var offset = 0
    while offset < bytes.count {
        let n = bytes.withUnsafeMutableBytes { write(STDOUT_FILENO, $0.baseAddress! + offset, $0.count - offset) }
        if n > 0 { offset += n } else if n < 0 && errno != EINTR { return }
    }
}

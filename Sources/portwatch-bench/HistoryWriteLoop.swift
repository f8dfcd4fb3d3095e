import ArgumentParser
import Foundation
import PortwatchCore
import PortwatchMonitor

/// Writes samples in a loop and says after each commit which one it was: the child that the
/// crash-safety test kills with SIGKILL at a moment read from this output.
struct HistoryWriteLoop: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "history-write-loop",
        abstract: "Write history batches in a loop, printing `committed TIME_MS SEQ` after each.",
        shouldDisplay: false
    )

    @Option(help: "Database file.") var db: String
    @Option(help: "Pause between batches.") var interval = "10ms"
    @Option(help: "Ports per batch (from 20000).") var ports = 5
    @Option(help: "Stop after this many batches.") var count = 100_000
    @Option(help: "Stop after this many seconds.") var maxSeconds = 120.0
    @Option(help: "Run maintenance every this many batches.") var maintainEvery = 50

    func run() throws {
        let pause = try seconds(interval, option: "--interval")
        guard ports >= 1, ports <= 1000, count >= 0, maintainEvery >= 1 else { throw ValidationError("bad counts") }
        let store = try HistoryStore(path: db)
        let began = monotonicClock()
        var lastMs = Int64((try store.latestTime() ?? 0) * 1000)
        for seq in 0..<count {
            if monotonicClock() - began > maxSeconds { break }
            // Strictly increasing times, so every batch has its own rows even within a millisecond.
            lastMs = max(lastMs + 1, Int64(wallClock() * 1000))
            let time = Double(lastMs) / 1000
            let samples = (0..<ports).map { i in
                PortSample(time: time, proto: .tcp, port: UInt16(20000 + i), listening: true, windowSeconds: pause,
                           bytesReceived: UInt64(seq), bytesSent: UInt64(lastMs), packetsReceived: UInt64(i),
                           owners: ["loop[\(getpid())]"])
            }
            let events = seq % 10 == 0
                ? [MonitorEvent(time: time, kind: .listenerStarted, proto: .tcp, port: 20000, message: "batch \(seq)")]
                : []
            try store.write(samples: samples, events: events)
            printFlushed("committed \(lastMs) \(seq)")
            if seq % maintainEvery == maintainEvery - 1 { try store.maintain(now: time) }
            if pause > 0 { usleep(UInt32(min(pause, 10) * 1_000_000)) }
        }
    }
}

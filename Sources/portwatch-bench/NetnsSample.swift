import ArgumentParser
import PortwatchCore
#if canImport(Glibc)
import Glibc
#endif

/// `portwatch-bench netns-sample`: the cost of one daemon sample of other network namespaces.
///
/// Builds the `NamespaceSampler` the daemon builds for `namespaces: [NAME, ...]` (same options:
/// listeners and their connections, socket owners), takes its baseline, then times `--samples`
/// samples. Prints one JSON object: namespaces and sockets seen, median/min/max wall seconds and
/// the median CPU seconds of the process per sample.
struct NetnsSample: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "netns-sample", abstract: "Time daemon samples of the named network namespaces.")

    @Option(help: "Samples to time.") var samples = 20
    @Flag(help: "Walk the kernel's tables at every sample (the daemon reuses a quiet namespace's last walk).")
    var walkAlways = false
    @Argument(help: "Namespace names (under /run/netns), paths or pid:PID.") var namespaces: [String]

    func validate() throws {
        guard (1...10_000).contains(samples) else { throw ValidationError("--samples must be 1...10000") }
        guard !namespaces.isEmpty else { throw ValidationError("name at least one namespace") }
    }

    func run() throws {
        let options = SnapshotOptions(query: SocketQuery(), includeOutgoing: false, processes: .owners,
                                      skipOutgoing: true)
        let sampler = try NamespaceSampler(options: options, selection: .list(namespaces), reuseQuietDumps: !walkAlways)
        let first = try sampler.start()
        guard first.parts.count == namespaces.count else {
            throw ValidationError("read \(first.parts.count) of \(namespaces.count) namespaces: \(first.notes)")
        }
        var wall: [Double] = []
        var cpu: [Double] = []
        var sockets = 0
        for _ in 0..<samples {
            let (w0, c0) = (clock(CLOCK_MONOTONIC), clock(CLOCK_PROCESS_CPUTIME_ID))
            let taken = try sampler.sample()
            wall.append(clock(CLOCK_MONOTONIC) - w0)
            cpu.append(clock(CLOCK_PROCESS_CPUTIME_ID) - c0)
            sockets = taken.parts.reduce(0) { $0 + $1.snapshot.sockets.count }
        }
        wall.sort()
        cpu.sort()
        printFlushed("{\"namespaces\":\(namespaces.count),\"sockets\":\(sockets),\"samples\":\(samples),"
            + "\"median\":\(wall[wall.count / 2]),\"min\":\(wall.first!),\"max\":\(wall.last!),"
            + "\"cpu_median\":\(cpu[cpu.count / 2]),\"replays\":\(sampler.dumpReuse.replays),"
            + "\"walks\":\(sampler.dumpReuse.walks)}")
    }

    private func clock(_ id: clockid_t) -> Double {
        var ts = timespec()
        clock_gettime(id, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
}

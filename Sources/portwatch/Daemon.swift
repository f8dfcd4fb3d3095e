import ArgumentParser
import Dispatch
import Logging
import PortwatchCore
import PortwatchMonitor
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// `portwatch daemon`: the monitor. Parses flags, loads the config, starts the composition in
/// PortwatchMonitor and waits for it to end (SIGTERM/SIGINT).
struct DaemonCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "daemon",
        abstract: "The monitor: samples every port in use, keeps history, evaluates rules, serves HTTP.",
        discussion: """
            With no config it watches every port in use, samples every 5s and serves on 127.0.0.1:9910. \
            Flags override the config file. SIGHUP reloads the config (an invalid one is logged and the \
            running one kept); SIGTERM or SIGINT stops it gracefully.
            """)

    @Option(name: .long, help: ArgumentHelp("YAML config file (see `portwatch config check`).", valueName: "file"))
    var config: String?

    @Option(name: .long, help: ArgumentHelp("History database (default $XDG_STATE_HOME/portwatch/history.sqlite; /var/lib/portwatch/history.sqlite as root).", valueName: "file"))
    var db: String?

    @Option(name: .long, help: ArgumentHelp("HTTP address (default 127.0.0.1:9910); a non-loopback one needs --token-file.", valueName: "addr:port"))
    var listen: String?

    @Option(name: .long, help: ArgumentHelp("Time between samples, 50ms to 1h (default 5s).", valueName: "duration"))
    var interval: String?

    @Option(name: .customLong("token-file"), help: ArgumentHelp("File holding the bearer token HTTP clients must send.", valueName: "file"))
    var tokenFile: String?

    func run() throws {
        var overrides = DaemonOverrides(database: db, tokenFile: tokenFile)
        if let listen {
            do throws(PortwatchError) {
                overrides.listen = try ListenAddress(parsing: listen)
            } catch {
                throw PortwatchError.usage("--listen: \(error.message)")
            }
        }
        if let interval {
            do throws(PortwatchError) {
                overrides.interval = try parseDuration(interval)
            } catch {
                throw PortwatchError.usage("--interval: \(error.message)")
            }
        }
        let path = config
        let flags = overrides
        var file = MonitorConfig()
        if let path {
            do throws(ConfigError) {
                file = try ConfigLoader.load(file: path)
            } catch {
                // One line per problem, each naming its place, as `config check` prints them.
                for problem in error.problems { printError(problem.description) }
                throw ExitCode(2)
            }
        }
        let effective = overrides.applied(to: file)
        try effective.checkStartable()

        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = logLevel()
            return handler
        }
        let logger = Logger(label: "portwatch.daemon")
        let ready = ReadinessLine(interval: effective.interval)
        let reload: (@Sendable () throws -> MonitorConfig)? = path.map { path in
            { @Sendable in flags.applied(to: try ConfigLoader.load(file: path)) }
        }
        do {
            try runBlocking {
                let daemon = try await Daemon.assemble(config: effective, reload: reload, extraSinks: [ready],
                                                       onHTTPReady: { ready.httpReady($0) }, logger: logger)
                try await daemon.run()
            }
        } catch let error as PortwatchError {
            throw error
        } catch {
            // A service that could not run (an HTTP port in use, a database that cannot open):
            // the monitor could not do its job, exit 2 with one line.
            throw PortwatchError.system("daemon stopped: \(error)")
        }
    }
}

/// `PORTWATCH_LOG_LEVEL` (trace, debug, info, notice, warning, error, critical), info by default.
private func logLevel() -> Logger.Level {
    guard let text = getenv("PORTWATCH_LOG_LEVEL").map({ String(cString: $0) }) else { return .info }
    return Logger.Level(rawValue: text.lowercased()) ?? .info
}

/// Prints `portwatch: daemon ready: sampling every 5s, N ports, http://127.0.0.1:9910` on
/// stderr once the first sample is in and the HTTP server listens: the line scripts and tests
/// wait for.
final class ReadinessLine: SampleSink {
    private struct Progress {
        var ports: Int?
        var http: ListenAddress?
        var said = false
    }

    private let interval: Duration
    private let progress = Mutex(Progress())

    init(interval: Duration) { self.interval = interval }

    func consume(_ latest: LatestSample) async {
        report { if $0.ports == nil { $0.ports = latest.samples.count } }
    }

    /// The HTTP server listens on `address`.
    func httpReady(_ address: ListenAddress) {
        report { $0.http = address }
    }

    private func report(_ change: (inout Progress) -> Void) {
        let line: String? = progress.withLock { p in
            change(&p)
            guard !p.said, let ports = p.ports, let http = p.http else { return nil }
            p.said = true
            return "daemon ready: sampling every \(formatDuration(interval)), \(ports) ports, http://\(http)"
        }
        if let line { printError(line) }
    }
}

/// Runs async work from the synchronous command and waits for it on this thread (the main
/// thread is not one of the cooperative pool's).
func runBlocking(_ body: @escaping @Sendable () async throws -> Void) throws {
    final class Outcome: Sendable {
        let result = Mutex<Result<Void, any Error>>(.success(()))
    }
    let done = DispatchSemaphore(value: 0)
    let outcome = Outcome()
    Task.detached {
        do { try await body() } catch { outcome.result.withLock { $0 = .failure(error) } }
        done.signal()
    }
    done.wait()
    try outcome.result.withLock { $0 }.get()
}

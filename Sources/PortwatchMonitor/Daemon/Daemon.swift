import Logging
import PortwatchCore
import ServiceLifecycle
import Synchronization

/// `portwatch daemon`: the sampler and the services around it in one `ServiceGroup`.
///
/// Composition (what the CLI builds):
/// ```swift
/// let state = MonitorState(interval: config.interval, history: store)
/// let daemon = Daemon(config: config,
///                     sinks: [state, ruleSink, metricsSink, LogSink(logger: logger)],
///                     services: [writer, dispatcher, http],
///                     reload: { try overrides.applied(to: ConfigLoader.load(file: path)) },
///                     onReload: [{ config in await rules.apply(config) }],
///                     logger: logger)
/// try await daemon.run()
/// ```
/// `Daemon.assemble` (DaemonAssembly.swift) builds exactly this for `portwatch daemon`.
/// SIGTERM and SIGINT shut down gracefully, in reverse order of start: the sampler first (the
/// sample in progress and its sinks finish, so the current history write completes), then the
/// `services` from last to first — list them so that what a later one needs comes earlier
/// (the history writer before the HTTP server). SIGHUP calls `reload`; a config that fails to
/// load is logged and the running one kept.
public final class Daemon: Sendable {
    /// The sampler service (its settings follow reloads).
    public let sampler: SamplerService
    private let services: [any Service]
    private let running: Mutex<MonitorConfig>
    private let reloadConfig: (@Sendable () throws -> MonitorConfig)?
    private let onReload: [@Sendable (MonitorConfig) async -> Void]
    private let logger: Logger

    /// `reload` reads the config again (nil: SIGHUP only logs that there is no file to read);
    /// `onReload` hands a new valid config to the parts that follow it (rules, channels).
    public init(config: MonitorConfig, sinks: [any SampleSink], services: [any Service] = [],
                reload: (@Sendable () throws -> MonitorConfig)? = nil,
                onReload: [@Sendable (MonitorConfig) async -> Void] = [],
                logger: Logger, source: any SocketSource = defaultSocketSource()) {
        self.running = Mutex(config)
        self.services = services
        self.reloadConfig = reload
        self.onReload = onReload
        self.logger = logger
        self.sampler = SamplerService(settings: SamplingSettings(config: config), sinks: sinks, logger: logger, source: source)
    }

    /// The config in force.
    public var config: MonitorConfig { running.withLock { $0 } }

    /// Runs until SIGTERM/SIGINT (or the task's cancellation), then shuts down gracefully.
    public func run() async throws {
        ReloadService.ignoreHangup()
        var configuration = ServiceGroupConfiguration(
            services: services + [ReloadService { [self] in _ = await self.reload() }, sampler],
            gracefulShutdownSignals: [.sigterm, .sigint],
            cancellationSignals: [],
            logger: logger)
        // A part that does not stop within this time is cancelled, so the process always ends.
        configuration.maximumGracefulShutdownDuration = .seconds(20)
        try await ServiceGroup(configuration: configuration).run()
    }

    /// Reads the config again and applies it; false (and the old config kept) when it is invalid.
    @discardableResult
    public func reload() async -> Bool {
        guard let reloadConfig else {
            logger.notice("SIGHUP: no config file to reload (started without --config)")
            return false
        }
        let new: MonitorConfig
        do {
            new = try reloadConfig()
            try new.checkStartable()
        } catch {
            let message: String
            switch error {
            case let error as ConfigError: message = error.problems.map(\.description).joined(separator: "; ")
            case let error as PortwatchError: message = error.message
            default: message = "\(error)"
            }
            logger.error("reload failed, keeping the running config: \(message)")
            return false
        }
        let old = running.withLock { current in
            defer { current = new }
            return current
        }
        if new.listen != old.listen || new.tokenFile != old.tokenFile || new.database != old.database {
            logger.warning("reload: listen, token_file and database changes take effect at the next start")
        }
        sampler.update(SamplingSettings(config: new))
        for apply in onReload { await apply(new) }
        logger.info("config reloaded: sampling every \(formatDuration(new.interval)), \(new.ports.count) configured ports, \(new.rules.count) rules, \(new.probes.count) probes")
        return true
    }
}

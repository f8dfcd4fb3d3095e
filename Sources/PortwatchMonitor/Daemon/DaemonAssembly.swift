import Logging
import PortwatchCore

extension Daemon {
    /// The daemon the CLI runs: live state, rules and alert channels, history and the sampler,
    /// wired as PRODUCT.md describes.
    ///
    /// `reload` reads the config file again (nil without `--config`); `extraSinks` run after the
    /// daemon's own (the CLI's readiness line). Sinks only enqueue: history goes to the writer's
    /// backlog and alerts to the dispatcher's channel queues, so a slow disk or receiver never
    /// delays a sample.
    public static func assemble(config: MonitorConfig, reload: (@Sendable () throws -> MonitorConfig)?,
                                extraSinks: [any SampleSink], logger: Logger) async throws -> Daemon {
        let history = InMemoryHistory(samplesPerPort: 120)
        let state = MonitorState(interval: config.interval, history: history)
        let everListened = try await history.everListened()
        let engine = RuleEngine(config: config, instance: config.resolvedInstance,
                                everListened: everListened, firstStart: everListened.isEmpty)
        let dispatcher = AlertDispatcher(config: config.channels, logger: Logger(label: "portwatch.alerts"))
        let rules = RuleSink(engine: engine, state: state, outputs: RuleOutputs(
            record: { samples, events, _ in
                await history.write(samples: samples, events: events)
            },
            notify: { alerts in await dispatcher.enqueue(alerts) }))
        let channels = config.channels
        return Daemon(
            config: config,
            sinks: [state, rules, LogSink(logger: logger)] + extraSinks,
            services: [dispatcher],
            reload: reload,
            onReload: [
                { new in state.setInterval(new.interval) },
                { new in await rules.apply(new) },
                { new in
                    if new.channels != channels {
                        logger.warning("reload: channel changes take effect at the next start")
                    }
                },
            ],
            logger: logger)
    }
}

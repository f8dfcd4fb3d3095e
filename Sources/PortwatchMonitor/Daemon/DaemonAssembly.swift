import Foundation
import Logging
import PortwatchCore
import PortwatchProbe
#if canImport(Glibc)
import Glibc
#endif

extension Daemon {
    /// The daemon the CLI runs, wired as PRODUCT.md describes: live state, the history store and
    /// its writer, rules and alert channels, `/metrics`, the HTTP server and the sampler.
    ///
    /// `reload` reads the config file again (nil without `--config`); `extraSinks` run after the
    /// daemon's own (the CLI's readiness line); `onHTTPReady` is called with the address the HTTP
    /// server bound. Sinks only enqueue: history goes to the writer's backlog and alerts to the
    /// dispatcher's channel queues, so a slow disk or receiver never delays a sample.
    /// `prober` probes the `probes:` targets: the same `NetworkProber` as `portwatch probe`.
    public static func assemble(config: MonitorConfig, reload: (@Sendable () throws -> MonitorConfig)?,
                                extraSinks: [any SampleSink],
                                onHTTPReady: @escaping @Sendable (ListenAddress) async -> Void = { _ in },
                                environment: [String: String] = ProcessInfo.processInfo.environment,
                                prober: any Prober = NetworkProber(),
                                logger: Logger) async throws -> Daemon {
        let path = config.database.resolvedPath(environment: environment, isRoot: geteuid() == 0)
        let store: HistoryStore
        do {
            store = try HistoryStore(path: path, retention: config.database.retention, maxSize: config.database.maxSize)
        } catch let error as PortwatchError {
            throw error
        } catch {
            throw PortwatchError.system("history database \(path): \(error)")
        }
        let history = StoredHistory(store: store)
        let writer = HistoryWriter(store: store, logger: Logger(label: "portwatch.history"))
        let state = MonitorState(interval: config.interval, history: history)

        let everListened = try store.everListened()
        let firstStart = try store.latestTime() == nil
        var engine = RuleEngine(config: config, instance: config.resolvedInstance,
                                everListened: everListened, firstStart: firstStart)
        if config.rules.contains(where: { $0.anomaly != nil }) {
            // A week of history is what the hour-of-week profiles need.
            let week = Date().timeIntervalSince1970 - 7 * 86_400
            engine.learn(history: try history.samples(since: week))
        }
        logger.info("history in \(path)\(firstStart ? " (new)" : ", \(everListened.count) ports listened before")")

        let dispatcher = AlertDispatcher(config: config.channels, logger: Logger(label: "portwatch.alerts"))
        let configured = Set(config.ports.map(\.key))
        let metrics = PortMetrics(maxPorts: config.metrics.maxPorts, configuredPorts: configured)
        let metricsSink = MetricsSink(metrics: metrics, configured: configured, dispatcher: dispatcher,
                                      writeErrors: { writer.writeErrors })
        let rules = RuleSink(engine: engine, state: state, outputs: RuleOutputs(
            record: { samples, events, alerts in
                writer.submit(HistoryWriter.Batch(samples: samples, events: events, alerts: alerts))
            },
            notify: { alerts in await dispatcher.enqueue(alerts) },
            active: { alerts, names in metrics.updateAlerts(alerts, rules: names) }))

        await state.setProbes(config.probes)
        let probes = ProbeService(probes: config.probes, prober: prober, logger: Logger(label: "portwatch.probe")) { result in
            await state.recordProbe(result)
            metrics.recordProbe(target: result.target.text, success: result.healthy, duration: result.duration,
                                tlsExpiry: result.tls.map { $0.notAfter.timeIntervalSince(result.time) })
            writer.submit(HistoryWriter.Batch(samples: [], probes: [result]))
            await rules.consume(probe: result)
        }
        let security = SecuritySink(
            thresholds: config.detectors.thresholds, instance: config.resolvedInstance,
            outputs: SecurityOutputs(
                publish: { events in await state.publish(events) },
                record: { events, alerts in writer.submit(HistoryWriter.Batch(samples: [], events: events, alerts: alerts)) },
                notify: { alerts in await dispatcher.enqueue(alerts) },
                count: { started in metrics.recordDetections(started) }),
            logger: Logger(label: "portwatch.security"))

        var token: String? = nil
        if let file = config.tokenFile {
            do throws(ConfigError) {
                token = try ConfigLoader.readToken(file: file)
            } catch {
                throw PortwatchError.usage(error.problems.map(\.description).joined(separator: "; "))
            }
        }
        let http = buildApplication(source: state, options: HTTPOptions(listen: config.listen, token: token),
                                    metrics: metrics, onServerRunning: onHTTPReady)

        let channels = config.channels
        return Daemon(
            config: config,
            sinks: [state, rules, security, metricsSink, LogSink(logger: logger)] + extraSinks,
            // Stopped in reverse: the HTTP server first, the writer last (it flushes its queue).
            services: [writer, dispatcher, probes, http],
            reload: reload,
            onReload: [
                { new in state.setInterval(new.interval) },
                { new in await rules.apply(new) },
                { new in
                    probes.update(new.probes)
                    await state.setProbes(new.probes)
                    metrics.retainProbes(Set(new.probes.map(\.target.text)))
                },
                { new in await security.apply(new) },
                { new in await metricsSink.setConfigured(Set(new.ports.map(\.key))) },
                { new in
                    if new.channels != channels {
                        logger.warning("reload: channel changes take effect at the next start")
                    }
                },
            ],
            logger: logger)
    }
}

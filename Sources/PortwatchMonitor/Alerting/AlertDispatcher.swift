import AsyncHTTPClient
import Logging
import ServiceLifecycle

/// Hands alerts to every channel without ever making the caller wait on one.
///
/// Each channel has a bounded queue and one worker: `enqueue` only appends (dropping the oldest
/// entry of a full queue, counted per channel and logged), so a dead receiver or a hanging
/// command delays nothing but its own channel — never the sampler, never another channel.
/// Runs as a `Service`: `run()` delivers until graceful shutdown or cancellation.
public actor AlertDispatcher: Service {
    enum Job: Sendable {
        case alert(Alert)
        case refresh
    }

    struct Lane: Sendable {
        var channel: any AlertChannel
        var jobs: AsyncStream<Job>
        var queue: AsyncStream<Job>.Continuation
    }

    private let lanes: [Lane]
    private var drops: [String: Int] = [:]
    private let logger: Logger
    /// How often channels are asked to `refresh()` (Alertmanager's re-send of firing alerts).
    public nonisolated let refreshInterval: Duration
    /// Entries each channel's queue holds before the oldest is dropped.
    public nonisolated let capacity: Int

    /// Channels must have unique names.
    public init(channels: [any AlertChannel], capacity: Int = 256, refreshInterval: Duration = .seconds(60),
                logger: Logger = Logger(label: "portwatch.alerts")) {
        self.capacity = max(1, capacity)
        self.refreshInterval = refreshInterval
        self.logger = logger
        lanes = channels.map { channel in
            let (stream, continuation) = AsyncStream.makeStream(of: Job.self,
                                                               bufferingPolicy: .bufferingNewest(max(1, capacity)))
            return Lane(channel: channel, jobs: stream, queue: continuation)
        }
        for channel in channels { drops[channel.name] = 0 }
    }

    /// The channels of a configuration: log, webhook, Alertmanager and exec.
    public init(config: [ChannelConfig], capacity: Int = 256, refreshInterval: Duration = .seconds(60),
                client: HTTPClient = .shared, logger: Logger = Logger(label: "portwatch.alerts")) {
        self.init(channels: Self.channels(config, client: client, logger: logger), capacity: capacity,
                  refreshInterval: refreshInterval, logger: logger)
    }

    /// Builds channels from their configuration; names are made unique ("webhook URL #2").
    public static func channels(_ config: [ChannelConfig], client: HTTPClient = .shared,
                                logger: Logger = Logger(label: "portwatch.alerts")) -> [any AlertChannel] {
        var seen: [String: Int] = [:]
        func unique(_ name: String) -> String {
            let n = (seen[name] ?? 0) + 1
            seen[name] = n
            return n == 1 ? name : "\(name) #\(n)"
        }
        return config.map { c -> any AlertChannel in
            switch c {
            case .log:
                return LogChannel(name: unique("log"), logger: logger)
            case .webhook(let url, let timeout):
                return WebhookChannel(url: url, poster: HTTPPoster(client: client, timeout: timeout, logger: logger),
                                      name: unique("webhook \(url)"))
            case .alertmanager(let url, let timeout):
                return AlertmanagerChannel(url: url, poster: HTTPPoster(client: client, timeout: timeout, logger: logger),
                                           name: unique("alertmanager \(url)"))
            case .exec(let command, let timeout):
                return ExecChannel(command: command, timeout: timeout, name: unique("exec \(command.first ?? "")"),
                                   logger: logger)
            }
        }
    }

    /// Channel names, in configuration order.
    public nonisolated var channelNames: [String] { lanes.map(\.channel.name) }

    /// Queues alerts for every channel; returns at once.
    public func enqueue(_ alerts: [Alert]) {
        for alert in alerts {
            for lane in lanes { push(.alert(alert), to: lane) }
        }
    }

    /// Queues a job on one lane, counting the alert a full queue drops to make room (a refresh
    /// pushes one out as an alert does).
    private func push(_ job: Job, to lane: Lane) {
        guard case .dropped(.alert(let old)) = lane.queue.yield(job) else { return }
        let total = (drops[lane.channel.name] ?? 0) + 1
        drops[lane.channel.name] = total
        // One line per drop would be its own storm: the first, then every hundredth.
        if total == 1 || total % 100 == 0 {
            logger.warning("alert queue full, dropped the oldest alert", metadata: [
                "channel": "\(lane.channel.name)", "dropped_rule": "\(old.rule)",
                "dropped_total": "\(total)", "capacity": "\(capacity)",
            ])
        }
    }

    /// Alerts dropped so far per channel name (for `portwatch_alert_queue_dropped_total`).
    public func dropped() -> [String: Int] { drops }

    /// Asks every channel to refresh now (the periodic re-send; `run()` does it every `refreshInterval`).
    public func tick() {
        for lane in lanes { push(.refresh, to: lane) }
    }

    /// Delivers until graceful shutdown or cancellation; queued alerts not yet sent are dropped then.
    public func run() async throws {
        let lanes = self.lanes
        let logger = self.logger
        let interval = refreshInterval
        await cancelWhenGracefulShutdown {
            await withTaskGroup(of: Void.self) { group in
                for lane in lanes {
                    group.addTask { await Self.work(lane, logger: logger) }
                }
                group.addTask {
                    while !Task.isCancelled {
                        do { try await Task.sleep(for: interval) } catch { return }
                        await self.tick()
                    }
                }
                await group.waitForAll()
            }
        }
        for lane in lanes { lane.queue.finish() }
    }

    /// One channel's worker: deliveries in order, one at a time; failures are logged and skipped.
    private static func work(_ lane: Lane, logger: Logger) async {
        for await job in lane.jobs {
            do {
                switch job {
                case .alert(let alert): try await lane.channel.deliver(alert)
                case .refresh: try await lane.channel.refresh()
                }
            } catch is CancellationError {
                return
            } catch {
                var metadata: Logger.Metadata = ["channel": "\(lane.channel.name)", "error": "\(error)"]
                if case .alert(let alert) = job { metadata["rule"] = "\(alert.rule)" }
                logger.warning("alert delivery failed", metadata: metadata)
            }
        }
    }
}

import Dispatch
import Logging
import PortwatchCore
import ServiceLifecycle
import Synchronization

/// What the sampler reads before each sample; a reload replaces it.
public struct SamplingSettings: Sendable, Hashable {
    public var interval: Duration
    /// AF_PACKET capture (UDP traffic per port, closed-port hits); needs CAP_NET_RAW.
    public var capture: Bool
    /// Ports that get a row even when nothing uses them.
    public var configured: Set<MonitoredPort>
    /// Other network namespaces to sample as well (`namespaces:`); nil: only the daemon's own.
    public var namespaces: NamespaceSelection?
    /// Security detectors (scans, floods, storms) run on every window; nil: none.
    public var detectors: DetectorSettings?

    public init(interval: Duration, capture: Bool = false, configured: Set<MonitoredPort> = [],
                namespaces: NamespaceSelection? = nil, detectors: DetectorSettings? = nil) {
        self.interval = interval
        self.capture = capture
        self.configured = configured
        self.namespaces = namespaces
        self.detectors = detectors
    }

    /// The settings a config asks for.
    public init(config: MonitorConfig) {
        self.init(interval: config.interval, capture: config.capture,
                  configured: Set(config.ports.filter { $0.namespace == nil }.map(\.key)),
                  namespaces: config.namespaces, detectors: config.detectors.security)
    }
}

/// Samples every interval with PortwatchCore's `Sampler` (the engine of `top` and `--sample`)
/// and hands each `LatestSample` to the sinks, in order.
///
/// The sampler is synchronous (netlink dumps, /proc walks), so it runs on a serial queue of its
/// own and never blocks the cooperative pool. On graceful shutdown the sample in progress and
/// its sinks finish (so a history write completes), then `run()` returns.
public final class SamplerService: Service, Sendable {
    private let settings: Mutex<SamplingSettings>
    private let sinks: [any SampleSink]
    private let engine: SamplerEngine
    private let queue = DispatchQueue(label: "portwatch.sampler")
    private let logger: Logger

    /// `source` is the socket table to read (the kernel's by default; a fixed one in tests).
    public init(settings: SamplingSettings, sinks: [any SampleSink], logger: Logger,
                source: any SocketSource = defaultSocketSource()) {
        self.settings = Mutex(settings)
        self.sinks = sinks
        self.logger = logger
        self.engine = SamplerEngine(source: source, logger: logger)
    }

    /// The settings the next sample uses.
    public var currentSettings: SamplingSettings { settings.withLock { $0 } }

    /// Applies new settings from the next sample on (a change of `capture` restarts the window).
    public func update(_ new: SamplingSettings) {
        settings.withLock { $0 = new }
    }

    public func run() async throws {
        var deadline = ContinuousClock.now
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            let current = currentSettings
            let engine = self.engine
            let latest: LatestSample? = await withCheckedContinuation { continuation in
                queue.async { continuation.resume(returning: engine.step(current)) }
            }
            if let latest {
                for sink in sinks { await sink.consume(latest) }
            }
            // Deadlines, not sleeps after work: samples stay an interval apart however long one
            // takes; after a stall (a suspended VM) sampling resumes without a burst.
            deadline = deadline.advanced(by: current.interval)
            let now = ContinuousClock.now
            if deadline < now { deadline = now }
            let until = deadline
            do {
                try await cancelWhenGracefulShutdown {
                    try await Task.sleep(until: until, clock: .continuous)
                }
            } catch {
                break
            }
        }
        logger.debug("sampler stopped")
    }
}

/// The synchronous part: one `Sampler`, and what has been logged about it already.
///
/// `@unchecked Sendable`: every member is read and written only inside `step`, which the
/// service calls on its one serial queue, one call at a time.
final class SamplerEngine: @unchecked Sendable {
    private let source: any SocketSource
    private let logger: Logger
    private var sampler: Sampler?
    private var capturing = false
    private var detecting: DetectorSettings?
    /// Notes already logged (digits stripped: "3 processes" and "4 processes" are one note).
    private var logged = Set<String>()
    private var repeated: [String: ContinuousClock.Instant] = [:]
    private var lastError: (message: String, at: ContinuousClock.Instant)?
    /// The other namespaces' sampler, for the selection (and capture setting) it was made for.
    private var namespaceSampler: (selection: NamespaceSelection, capture: Bool, detectors: DetectorSettings?,
                                   sampler: NamespaceSampler)?
    /// Namespaces sampled at the previous sample (nil before the first), for their events.
    private var knownNamespaces: [UInt64: NetworkNamespace]?
    /// The daemon's own namespace, and the /run/netns state its name was resolved from.
    private var own: (directory: [Int], namespace: NetworkNamespace?)?

    init(source: any SocketSource, logger: Logger) {
        self.source = source
        self.logger = logger
    }

    /// One sample: the baseline when the sampler is new (report nil), else the next window.
    /// nil when the kernel could not be read this time (logged; the next interval tries again).
    func step(_ settings: SamplingSettings) -> LatestSample? {
        do throws(PortwatchError) {
            if sampler == nil || capturing != settings.capture || detecting != settings.detectors {
                let sampler = try makeSampler(capture: settings.capture, detectors: settings.detectors)
                self.sampler = sampler
                let snapshot = try sampler.start()
                lastError = nil
                note(snapshot.notes)
                var latest = LatestSample(snapshot: snapshot, report: nil,
                                          samples: PortSample.rows(snapshot: snapshot, report: nil, configured: settings.configured))
                addNamespaces(settings, to: &latest)
                return latest
            }
            let (snapshot, report) = try sampler!.sample()
            lastError = nil
            note(snapshot.notes + report.notes)
            var latest = LatestSample(snapshot: snapshot, report: report,
                                      samples: PortSample.rows(snapshot: snapshot, report: report, configured: settings.configured))
            addNamespaces(settings, to: &latest)
            return latest
        } catch {
            // Said again when it changes, or once a minute while it lasts.
            let now = ContinuousClock.now
            if let last = lastError, last.message == error.message, last.at.duration(to: now) < .seconds(60) {
                return nil
            }
            logger.error("sampling failed: \(error.message)")
            lastError = (error.message, now)
            return nil
        }
    }

    /// The daemon's own namespace. Its name is resolved again only when /run/netns changed
    /// (`ip netns attach` can name it while the daemon runs): resolving it lists and stats every
    /// named namespace, at every sample otherwise.
    private func ownNamespace() -> NetworkNamespace? {
        let directory = NamespaceDirectory.namesState()
        if let own, !directory.isEmpty, own.directory == directory { return own.namespace }
        let namespace = NamespaceDirectory.own()
        own = (directory, namespace)
        return namespace
    }

    /// Samples the other namespaces the settings name (each with its own socket and destroy
    /// events) and adds their rows, tagged with the namespace, and the namespaces that came or
    /// went. The daemon's own namespace stays with the main sampler; the sample names it.
    private func addNamespaces(_ settings: SamplingSettings, to latest: inout LatestSample) {
        latest.ownNamespace = ownNamespace()
        guard let selection = settings.namespaces else {
            namespaceSampler = nil
            knownNamespaces = nil
            return
        }
        do throws(PortwatchError) {
            let taken: NamespaceSnapshot
            if let current = namespaceSampler, current.selection == selection, current.capture == settings.capture,
               current.detectors == settings.detectors {
                taken = try current.sampler.sample()
            } else {
                let options = SnapshotOptions(query: SocketQuery(), includeOutgoing: false, processes: .owners,
                                              skipOutgoing: true)
                // `capture: true` captures inside each namespace too (its UDP traffic, resets and
                // scans are only seen there), and each namespace runs its own detectors.
                let made = try NamespaceSampler(options: options, selection: selection, capture: settings.capture,
                                                detectors: settings.detectors, reuseQuietDumps: true,
                                                includeOwn: false)
                namespaceSampler = (selection, settings.capture, settings.detectors, made)
                taken = try made.start()
            }
            note(taken.notes)
            let parts = taken.parts.filter { !$0.namespace.isOwn }
            latest.namespaceParts = parts
            for part in parts {
                for var row in PortSample.rows(snapshot: part.snapshot, report: part.report, configured: []) {
                    row.namespace = part.namespace.daemonLabel
                    latest.samples.append(row)
                }
            }
            let now = Dictionary(parts.map { ($0.namespace.inode, $0.namespace) }, uniquingKeysWith: { a, _ in a })
            if let before = knownNamespaces {
                let time = latest.snapshot.takenAt
                // The old namespace goes before the new one comes: a name deleted and made again
                // between two samples reads in the order it happened.
                for (inode, ns) in before.sorted(by: { $0.value < $1.value }) where now[inode] == nil {
                    latest.namespaceEvents.append(MonitorEvent(time: time, kind: .namespaceRemoved,
                        message: "network namespace \(ns.daemonLabel) is gone", details: Self.details(ns)))
                }
                for (inode, ns) in now.sorted(by: { $0.value < $1.value }) where before[inode] == nil {
                    latest.namespaceEvents.append(MonitorEvent(time: time, kind: .namespaceAdded,
                        message: "network namespace \(ns.daemonLabel) appeared", details: Self.details(ns)))
                }
                let gone = Set(before.filter { now[$0.key] == nil }.values.map(\.daemonLabel))
                let came = Set(now.filter { before[$0.key] == nil }.values.map(\.daemonLabel))
                latest.replacedNamespaces = gone.intersection(came)
            }
            knownNamespaces = now
        } catch {
            logNow("network namespaces not sampled: \(error.message)", every: .seconds(60))
        }
    }

    private static func details(_ ns: NetworkNamespace) -> [String: String] {
        var details = ["netns": ns.daemonLabel, "netns_inode": String(ns.inode)]
        if let pid = ns.pid { details["pid"] = String(pid) }
        return details
    }

    /// A sampler with destroy events (and capture when asked); what the process may not see is
    /// logged once and sampling goes on without it.
    private func makeSampler(capture: Bool, detectors: DetectorSettings?) throws(PortwatchError) -> Sampler {
        // The daemon shows no outgoing rows: the kernel need not fill in the machine's client sockets.
        let options = SnapshotOptions(query: SocketQuery(), includeOutgoing: false, processes: .owners,
                                      skipOutgoing: true)
        capturing = capture
        detecting = detectors
        var made: Sampler? = nil
        if capture {
            do throws(PortwatchError) {
                made = try Sampler(options: options, source: source, closedConnections: true, capture: true,
                                   detectors: detectors, reuseQuietDumps: true)
            } catch {
                logOnce("packet capture unavailable (needs root or CAP_NET_RAW): \(error.message); "
                        + "UDP traffic per port and closed-port hits are not measured")
            }
        }
        // Without capture, missing destroy events degrade to a note rather than an error.
        let sampler: Sampler
        if let made {
            sampler = made
        } else {
            // SYN floods are still judged from counters; scans and storms need the packets.
            sampler = try Sampler(options: options, source: source, closedConnections: true, capture: false,
                                  detectors: detectors, reuseQuietDumps: true)
        }
        if let reason = sampler.eventsUnavailable {
            logOnce("destroy events unavailable (needs root or CAP_NET_ADMIN): \(reason); "
                    + "traffic of connections that close between samples is not counted")
        }
        return sampler
    }

    /// Logs a snapshot's or window's notes: what needs a privilege once (it will not change
    /// while the process runs), anything else (event overflows, capture drops) at most once a
    /// minute while it lasts.
    private func note(_ notes: [String]) {
        for n in notes {
            // Said once already, when the sampler was made.
            if n.hasPrefix("connections closed between samples are not counted") && sampler?.eventsUnavailable != nil { continue }
            if n.contains("needs root") || n.contains("CAP_") {
                logOnce(n)
            } else {
                logNow(n, every: .seconds(60))
            }
        }
    }

    private func logOnce(_ message: String) {
        if logged.insert(Self.key(message)).inserted { logger.warning("\(message)") }
    }

    private func logNow(_ message: String, every period: Duration) {
        let key = Self.key(message)
        let now = ContinuousClock.now
        if let last = repeated[key], last.duration(to: now) < period { return }
        repeated[key] = now
        logger.warning("\(message)")
    }

    /// Notes that differ only in their numbers ("3 processes", "4 processes") are one note.
    private static func key(_ message: String) -> String {
        String(message.unicodeScalars.filter { !("0"..."9").contains($0) }.map(Character.init))
    }
}

#if canImport(Glibc)
import Glibc
#endif

/// Successive snapshots with exact per-port deltas between them: the engine behind
/// `--sample`, `top` and the daemon. One instance is driven from one task at a time.
public final class Sampler {
    public let options: SnapshotOptions
    private let source: any SocketSource
    /// The source when dumps of a quiet namespace are reused (`reuseQuietDumps`).
    private let replay: QuietReplaySource?
    private let events: DestroyEventStream?
    private var tracker = TrafficTracker()
    private var ownerCache: OwnerCache? = OwnerCache()
    private var memory = SideMemory()
    private let capture: PacketCapture?
    private var lastCapture = CaptureCounters()
    private var security: SecurityMonitor?
    /// Another namespace's counter files, opened inside it (nil in our own namespace).
    private let counterFiles: SystemCounterFiles?
    /// Why closed connections are not counted, when destroy events are unavailable.
    public let eventsUnavailable: String?
    /// The network namespace sampled; nil for portwatch's own.
    public let namespace: NetworkNamespace?

    /// Opens the destroy-event stream when `closedConnections` is set; without the privilege
    /// sampling still works, and `eventsUnavailable` says what is missing.
    ///
    /// With `capture`, an AF_PACKET capture also measures UDP traffic per port and packets that
    /// hit closed ports; it needs CAP_NET_RAW, and its absence is an error (it was asked for).
    ///
    /// With `namespace` (another network namespace), `source` must read that namespace; the
    /// destroy-event subscription, the capture and the system counters are opened inside it.
    /// With `detectors`, each window also carries a `SecurityReport` (`WindowReport.security`):
    /// scans and connection storms need the capture; floods are judged from counters without it.
    ///
    /// With `reuseQuietDumps` (the daemon), a sample whose TCP counters did not move since the
    /// last walk reuses that walk's non-listening TCP sockets instead of walking the kernel's
    /// tables again; listeners and UDP are read fresh unless nothing at all moved in the
    /// namespace and no queue held anything (see `QuietReplaySource`).
    public init(options: SnapshotOptions, source: (any SocketSource)? = nil,
                closedConnections: Bool = true, capture: Bool = false,
                detectors: DetectorSettings? = nil,
                namespace: NetworkNamespace? = nil, reuseQuietDumps: Bool = false) throws(PortwatchError) {
        self.options = options
        self.security = detectors.map { SecurityMonitor(settings: $0) }
        let inside = namespace.flatMap { $0.isOwn ? nil : $0 }
        self.namespace = inside
        if capture {
            let c: PacketCapture
            if let inside {
                c = try NamespaceEntry.run(in: inside) { () throws(PortwatchError) in try PacketCapture(detectors: detectors) }
            } else {
                c = try PacketCapture(detectors: detectors)
            }
            c.start()
            self.capture = c
        } else {
            self.capture = nil
        }
        let plain = source ?? defaultSocketSource(options.socketSource)
        // Only the kernel's own dump is worth skipping and only it is described by the counters.
        let replay = reuseQuietDumps && plain.name == "sock_diag" ? QuietReplaySource(plain) : nil
        self.replay = replay
        self.source = replay ?? plain
        var stream: DestroyEventStream? = nil
        var reason: String? = nil
        var files: SystemCounterFiles? = nil
        if let inside {
            // One trip into the namespace opens all that must be opened there; the counter
            // files keep the namespace, so later samples read them without entering it again.
            do {
                let opened = try NamespaceEntry.run(in: inside) { () throws(PortwatchError) in
                    (closedConnections ? Result { () throws(PortwatchError) in try DestroyEventStream() } : nil,
                     SystemCounterFiles(root: "/proc/thread-self/net"))
                }
                files = opened.1
                switch opened.0 {
                case .success(let s)?: stream = s
                case .failure(let error)?: reason = error.message
                case nil: break
                }
            } catch {
                reason = error.message
            }
        } else if closedConnections {
            do {
                stream = try DestroyEventStream()
            } catch {
                reason = error.message
            }
        }
        self.counterFiles = files
        stream?.start()
        self.events = stream
        self.eventsUnavailable = closedConnections ? reason : nil
    }

    deinit {
        events?.stop()
        capture?.stop()
    }

    /// Takes the baseline snapshot.
    @discardableResult
    public func start() throws(PortwatchError) -> PortSnapshot {
        // Counters before the dump: a dump reused later must be as new as the counters it matched.
        let system = systemCounters()
        replay?.fingerprint = system.value.tcpQuietFingerprint
        replay?.activity = system.value.activityFingerprint
        let snapshot = try PortSnapshot.take(options, source: source, ownerCache: &ownerCache, memory: memory)
        memory.learn(snapshot.sockets, classifier: snapshot.classifier)
        _ = events?.drain()
        tracker.start(snapshot, system: system.value, classifier: snapshot.classifier)
        if let capture {
            lastCapture = capture.snapshot()
            // Packets before the baseline belong to no window.
            _ = capture.drainFindings(now: snapshot.takenAt)
        }
        return snapshot
    }

    /// Takes the next snapshot and the activity since the previous one.
    public func sample() throws(PortwatchError) -> (PortSnapshot, WindowReport) {
        var t0 = timespec()
        clock_gettime(CLOCK_MONOTONIC, &t0)
        let system = systemCounters()
        replay?.fingerprint = system.value.tcpQuietFingerprint
        replay?.activity = system.value.activityFingerprint
        let snapshot = try PortSnapshot.take(options, source: source, ownerCache: &ownerCache, memory: memory)
        let batch = events?.drain()
        var report = tracker.advance(snapshot, destroyed: batch, system: system.value,
                                      classifier: snapshot.classifier)
        memory.learn(snapshot.sockets, classifier: snapshot.classifier)
        report.notes.append(contentsOf: system.notes)
        if let capture {
            let now = capture.snapshot()
            let delta = now.delta(since: lastCapture)
            lastCapture = now
            merge(delta, into: &report, classifier: snapshot.classifier)
        }
        if security != nil {
            let findings = capture?.drainFindings(now: snapshot.takenAt)
            report.security = security!.evaluate(now: snapshot.takenAt, snapshot: snapshot, window: report, packets: findings)
        }
        var t1 = timespec()
        clock_gettime(CLOCK_MONOTONIC, &t1)
        report.sampleSeconds = Double(t1.tv_sec - t0.tv_sec) + Double(t1.tv_nsec - t0.tv_nsec) / 1e9
        if let reason = eventsUnavailable {
            report.notes.removeAll { $0.hasPrefix("connections closed between samples") }
            report.notes.append("connections closed between samples are not counted: \(reason)")
        }
        return (snapshot, report)
    }

    /// The namespace's system counters: /proc/net shows the namespace of the thread reading it.
    private func systemCounters() -> Collected<SystemCounters> {
        guard let namespace else { return SystemCounterCollector().collect() }
        return counterFiles?.collect()
            ?? Collected(SystemCounters(), notes: ["system counters of network namespace \(namespace.label) unreadable"])
    }

    /// Adds captured UDP traffic to the bound ports it belongs to, and closed-port hits.
    private func merge(_ delta: CaptureCounters, into report: inout WindowReport, classifier: PortClassifier) {
        report.captured = true
        report.closedPortHits = delta.closedPortHits
        report.captureKernelDrops = delta.kernelDrops
        for (port, count) in delta.udp {
            // A client's ephemeral port is not a row of its own: only bound service ports are.
            guard classifier.isListening(.udp, port) || !classifier.ephemeral.range.contains(port) else { continue }
            var activity = report.ports[PortKey.local(.udp, port)] ?? PortActivity()
            activity.traffic += TrafficCounters(bytesReceived: count.bytesReceived, bytesSent: count.bytesSent,
                                                packetsReceived: count.packetsReceived, packetsSent: count.packetsSent)
            report.ports[PortKey.local(.udp, port)] = activity
        }
        for (port, count) in delta.resets {
            guard classifier.isListening(.tcp, port) || !classifier.ephemeral.range.contains(port) else { continue }
            report.ports[PortKey.local(.tcp, port), default: PortActivity()].resetsSent &+= count.sent
            report.ports[PortKey.local(.tcp, port), default: PortActivity()].resetsReceived &+= count.received
        }
        if delta.kernelDrops > 0 {
            report.notes.append("packet capture: the kernel dropped \(delta.kernelDrops) packets before portwatch read them")
        }
    }

    /// Sockets the tracker follows.
    public var trackedSockets: Int { tracker.trackedSockets }

    /// How many dumps reused the last walk and how many walked (`reuseQuietDumps`), else nil.
    public var dumpReuse: (replays: Int, walks: Int)? { replay.map { ($0.replays, $0.walks) } }

    /// Listener dumps answered from the last one because nothing moved in the namespace.
    public var listingReuse: Int? { replay?.listingReplays }
}

/// Sleeps for a number of seconds (interrupted sleeps resume).
public func sleepSeconds(_ seconds: Double) {
    guard seconds > 0 else { return }
    var request = timespec(tv_sec: Int(seconds), tv_nsec: Int((seconds - Double(Int(seconds))) * 1e9))
    var remaining = timespec()
    while nanosleep(&request, &remaining) != 0 && errno == EINTR { request = remaining }
}

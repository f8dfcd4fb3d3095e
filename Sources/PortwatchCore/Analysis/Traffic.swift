/// What happened on one port during a window.
public struct PortActivity: Sendable, Hashable {
    /// Growth of the port's counters (`drops`: on connected sockets, and UDP receive-buffer drops).
    public var traffic = TrafficCounters()
    /// Drops on the port's listeners: SYNs or handshakes dropped, accept queue overflows.
    public var listenDrops: UInt64 = 0
    /// Connections that appeared in the window.
    public var opened = 0
    /// Connections that closed in the window.
    public var closed = 0
    /// Outgoing connection attempts that got no answer (or were abandoned) before closing.
    public var connectTimeouts = 0
    /// Outgoing connection attempts answered with a reset.
    public var connectRefused = 0
    /// With packet capture: TCP resets this port sent and received (aborted connections).
    public var resetsSent: UInt64 = 0
    public var resetsReceived: UInt64 = 0

    public init() {}

    /// Adds a socket's growth; a TCP listener's drops are listen drops, a UDP socket's are
    /// receive-buffer drops (`drops`).
    mutating func add(_ d: TrafficCounters, listening: Bool) {
        var growth = d
        if listening {
            listenDrops &+= d.drops
            growth.drops = 0
        }
        traffic += growth
    }

    /// Every error counted in the window, summed (for tables and sorting).
    public var errorCount: UInt64 {
        listenDrops &+ traffic.drops &+ traffic.retransmits &+ UInt64(connectTimeouts + connectRefused) &+ resetsSent &+ resetsReceived
    }

    /// Nothing happened.
    public var isQuiet: Bool { self == PortActivity() }
}

/// Per-port activity over one window between two samples.
public struct WindowReport: Sendable {
    /// Length of the window in seconds.
    public var seconds: Double
    public var ports: [PortKey: PortActivity]
    /// System-wide error counter deltas (snake_case names), in a stable order.
    public var system: [(String, Int64)]
    /// Destroy-event overflows in the window: closed connections may be undercounted.
    public var eventOverflows: Int
    /// Whether closed connections were counted at all (destroy events subscribed).
    public var closedConnectionsCounted: Bool
    public var notes: [String]
    /// With packet capture: packets that hit closed ports in the window, by port and source.
    public var closedPortHits: [ClosedPortKey: UInt64] = [:]
    /// With packet capture: packets the kernel dropped before we could read them.
    public var captureKernelDrops: UInt64 = 0
    /// Whether UDP traffic and closed-port hits were measured (packet capture on).
    public var captured = false
    /// Scans, floods and storms, when the sampler runs the security detectors.
    public var security: SecurityReport? = nil
    /// How long taking the sample itself took (dump, deltas, process attribution), in seconds.
    public var sampleSeconds: Double = 0
    /// Outgoing connects that failed in a blocking connect(): the kernel disconnects such a
    /// socket (erasing its destination port) before it closes, so no port row can take them.
    public var connectFailuresWithoutPort = 0
    /// Wall-clock times (seconds since the epoch) of the window's baseline and of its sample;
    /// 0 when unknown. Windows of views over several namespaces overlap: they are sampled together.
    public var startedAt: Double = 0
    public var endedAt: Double = 0

    public func activity(_ key: PortKey) -> PortActivity { ports[key] ?? PortActivity() }
}

/// Turns successive snapshots (plus destroy events) into exact per-port deltas.
///
/// Each socket is tracked by its cookie. A live socket contributes its growth since it was last
/// seen; a closed socket contributes its final counters (from the destroy event) less what was
/// already counted — so every byte counts once, whether the connection lived across samples or
/// opened and closed between them. A socket that vanished with no event yet is kept a few samples,
/// since the kernel sends destroy events from a work queue, slightly after the socket is gone.
public struct TrafficTracker: Sendable {
    private struct Seen: Sendable {
        var key: PortKey
        var counters: TrafficCounters
        var listening: Bool
        /// A connection (not a listener, nor a socket that only holds a bound port).
        var connection: Bool
        /// Samples in a row the socket was missing without a destroy event.
        var missing = 0
        /// The sample that last saw the socket.
        var generation: UInt32 = 0
    }

    private var seen: [UInt64: Seen] = [:]
    private var generation: UInt32 = 0
    private var lastTime: Double = 0
    /// Wall-clock time of the last snapshot folded in: where the next window starts.
    private var lastTakenAt: Double = 0
    private var lastSystem = SystemCounters()
    private var started = false
    /// Samples a vanished socket waits for its destroy event before it is given up.
    public var graceSamples = 3

    public init() {}

    /// Sets the baseline: counters already on the sockets now are not part of any window.
    public mutating func start(_ snapshot: PortSnapshot, system: SystemCounters, classifier: PortClassifier? = nil) {
        let classifier = classifier ?? snapshot.classifier
        seen.removeAll(keepingCapacity: true)
        seen.reserveCapacity(snapshot.sockets.count)
        generation &+= 1
        for s in snapshot.sockets {
            guard let c = TrafficCounters(s) else { continue }
            seen[s.cookie] = Seen(key: classifier.key(for: s), counters: c, listening: s.isListening,
                                  connection: !s.isListening && !s.isBoundOnly, generation: generation)
        }
        lastTime = Self.time(of: snapshot)
        lastTakenAt = snapshot.takenAt
        lastSystem = system
        started = true
    }

    /// Per-port activity while a window is being folded: one dictionary lookup per port, not
    /// per socket (sockets with no growth are skipped altogether).
    private struct Accumulator {
        var index: [PortKey: Int] = [:]
        var activity: [PortActivity] = []

        mutating func slot(_ key: PortKey) -> Int {
            if let i = index[key] { return i }
            activity.append(PortActivity())
            index[key] = activity.count - 1
            return activity.count - 1
        }

        var ports: [PortKey: PortActivity] {
            var out: [PortKey: PortActivity] = [:]
            out.reserveCapacity(index.count)
            for (key, i) in index { out[key] = activity[i] }
            return out
        }
    }

    /// Folds the next snapshot and the sockets closed since the last one into a window report.
    public mutating func advance(_ snapshot: PortSnapshot, destroyed: DestroyBatch?, system: SystemCounters,
                                 classifier: PortClassifier? = nil) -> WindowReport {
        if !started {
            start(snapshot, system: system, classifier: classifier)
            return WindowReport(seconds: 0, ports: [:], system: [], eventOverflows: 0,
                                closedConnectionsCounted: destroyed != nil, notes: [])
        }
        let classifier = classifier ?? snapshot.classifier
        generation &+= 1
        var acc = Accumulator()
        var final: [UInt64: SocketRecord] = [:]
        for s in destroyed?.sockets ?? [] where s.cookie != 0 { final[s.cookie] = s }
        let anyFinal = !final.isEmpty

        for s in snapshot.sockets {
            // Closed since the dump saw it: its destroy event below is the later, final word.
            if anyFinal && final[s.cookie] != nil { continue }
            let index = seen.index(forKey: s.cookie)
            guard let counters = TrafficCounters(s) else {
                // No counters (TIME_WAIT, SYN_RECV): keep what we knew, if anything.
                if let index {
                    seen.values[index].missing = 0
                    seen.values[index].generation = generation
                }
                continue
            }
            let listening = s.isListening
            // For the drop bucket only: a bound UDP socket's drops are receive-buffer drops.
            let tcpListener = listening && s.proto == .tcp
            if let index {
                let growth = counters.growth(since: seen.values[index].counters)
                if growth != TrafficCounters() {
                    acc.activity[acc.slot(seen.values[index].key)].add(growth, listening: tcpListener)
                }
                seen.values[index].counters = counters
                seen.values[index].missing = 0
                seen.values[index].generation = generation
            } else {
                let key = classifier.key(for: s)
                let slot = acc.slot(key)
                let connection = !listening && !s.isBoundOnly
                if connection { acc.activity[slot].opened += 1 }
                acc.activity[slot].add(counters, listening: tcpListener)
                seen[s.cookie] = Seen(key: key, counters: counters, listening: listening, connection: connection,
                                      generation: generation)
            }
        }

        var unattributed = 0
        for (cookie, s) in final {
            let previous = seen.removeValue(forKey: cookie)
            guard let key = previous?.key ?? classifier.key(forClosed: s) else {
                // Never seen and closed unconnected: no connection (a socket that was only
                // bound), unless a failed blocking connect erased its destination.
                if s.proto == .tcp && !s.peer.address.isWildcard { unattributed += 1 }
                continue
            }
            let counters = TrafficCounters(s) ?? TrafficCounters()
            let slot = acc.slot(key)
            if previous == nil { acc.activity[slot].opened += 1 }
            // A listener or a socket that only held its port closing is no connection closing.
            if previous?.connection ?? true { acc.activity[slot].closed += 1 }
            acc.activity[slot].add(counters.growth(since: previous?.counters ?? TrafficCounters()),
                                   listening: previous?.listening ?? false)
            if key.role == .remote, let tcp = s.tcp, tcp.bytesAcked == 0, tcp.bytesReceived == 0, tcp.rttMicros == 0 {
                // Never completed a handshake: no SYN-ACK was ever acknowledged or timed.
                if tcp.segmentsIn > 0 { acc.activity[slot].connectRefused += 1 } else { acc.activity[slot].connectTimeouts += 1 }
            }
        }

        // Sockets that vanished without an event: wait a little for it, then let them go (what
        // they carried until last seen was already counted).
        var gone: [UInt64] = []
        var i = seen.values.startIndex
        while i != seen.values.endIndex {
            if seen.values[i].generation != generation {
                seen.values[i].missing += 1
                if seen.values[i].missing > graceSamples {
                    gone.append(seen.keys[i])
                    if seen.values[i].connection { acc.activity[acc.slot(seen.values[i].key)].closed += 1 }
                }
            }
            i = seen.values.index(after: i)
        }
        for cookie in gone { seen.removeValue(forKey: cookie) }

        var notes: [String] = []
        let overflows = destroyed?.overflows ?? 0
        if overflows > 0 {
            notes.append("destroy events overflowed \(overflows)× (ENOBUFS): traffic of connections closed in this window is undercounted")
        }
        if destroyed == nil {
            notes.append("connections closed between samples are not counted (destroy events need root or CAP_NET_ADMIN)")
        }
        let now = Self.time(of: snapshot)
        var report = WindowReport(seconds: max(0, now - lastTime), ports: acc.ports,
                                  system: system.errorDeltas(since: lastSystem), eventOverflows: overflows,
                                  closedConnectionsCounted: destroyed != nil, notes: notes)
        report.connectFailuresWithoutPort = unattributed
        report.startedAt = lastTakenAt
        report.endedAt = snapshot.takenAt
        lastTime = now
        lastTakenAt = snapshot.takenAt
        lastSystem = system
        return report
    }

    /// The monotonic time of a snapshot (wall time for snapshots built without one, in tests).
    private static func time(of snapshot: PortSnapshot) -> Double {
        snapshot.monotonicAt > 0 ? snapshot.monotonicAt : snapshot.takenAt
    }

    /// Sockets currently tracked (for tests and memory accounting).
    public var trackedSockets: Int { seen.count }
}

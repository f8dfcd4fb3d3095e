/// Port scans: per source address and kind of probe, the distinct local ports touched within a
/// sliding window. Crossing the threshold starts one detection (one event, not one per packet);
/// a window without a probe from that source ends it (a second event with the totals).
///
/// Pure and driven by the caller's clock (packet timestamps, then the sample time), so tests
/// replay recorded probe sequences.
public struct PortScanDetector: Sendable {
    public var threshold: Int
    public var window: Double
    /// Sources followed at once; probes from further sources are counted in `untracked`.
    public var sourceLimit = 65_536

    private struct Key: Hashable {
        var source: IPAddress
        var kind: ScanKind
    }

    private struct Track {
        /// Before detection: port → when it was last probed (at most `threshold` entries, pruned).
        var recent: [UInt16: Double] = [:]
        var last: Double
        var detection: Detection?
    }

    private struct Detection {
        var since: Double
        var started: Double
        var touched = PortSet()
        var firstPort: UInt16
        var lastPort: UInt16
        var probes: UInt64
    }

    private var tracks: [Key: Track] = [:]
    private var pending: [SecurityEvent] = []
    /// Probes not followed because `sourceLimit` sources were already.
    public private(set) var untracked: UInt64 = 0

    public init(threshold: Int = 20, window: Double = 10) {
        self.threshold = max(2, threshold)
        self.window = max(0.1, window)
    }

    /// One probe: `source` touched local `port` at `time` (seconds) the way `kind` says.
    public mutating func observe(source: IPAddress, port: UInt16, kind: ScanKind, time: Double) {
        let key = Key(source: source, kind: kind)
        guard let index = tracks.index(forKey: key) else {
            guard tracks.count < sourceLimit else {
                untracked &+= 1
                return
            }
            tracks[key] = Track(recent: [port: time], last: time)
            return
        }
        tracks.values[index].last = max(tracks.values[index].last, time)
        if tracks.values[index].detection != nil {
            tracks.values[index].detection!.touched.insert(port)
            tracks.values[index].detection!.lastPort = port
            tracks.values[index].detection!.probes &+= 1
            return
        }
        tracks.values[index].recent[port] = time
        guard tracks.values[index].recent.count >= threshold else { return }
        // Only ports probed within the window count: drop the older ones, then look again.
        let horizon = time - window
        tracks.values[index].recent = tracks.values[index].recent.filter { $0.value > horizon }
        let recent = tracks.values[index].recent
        guard recent.count >= threshold else { return }
        let first = recent.min { $0.value != $1.value ? $0.value < $1.value : $0.key < $1.key }!
        var detection = Detection(since: first.value, started: time, firstPort: first.key, lastPort: port,
                                  probes: UInt64(recent.count))
        for p in recent.keys { detection.touched.insert(p) }
        tracks.values[index].detection = detection
        tracks.values[index].recent = [:]
        pending.append(event(key, detection, phase: .started, time: time))
    }

    /// Detections that started since the last call, and those that ended by `now` (no probe for a
    /// whole window). Forgets sources that went quiet without scanning.
    public mutating func evaluate(now: Double) -> [SecurityEvent] {
        var out = pending
        pending.removeAll()
        let horizon = now - window
        var quiet: [Key] = []
        for (key, track) in tracks where track.last <= horizon {
            quiet.append(key)
            if let d = track.detection { out.append(event(key, d, phase: .ended, time: now)) }
        }
        for key in quiet { tracks.removeValue(forKey: key) }
        return out.sorted { $0.time != $1.time ? $0.time < $1.time : $0.phase == .started && $1.phase == .ended }
    }

    /// Scans going on, with their counts so far.
    public var active: [SecurityEvent] {
        tracks.compactMap { key, track in track.detection.map { event(key, $0, phase: .started, time: $0.started) } }
            .sorted { $0.since < $1.since }
    }

    private func event(_ key: Key, _ d: Detection, phase: DetectionPhase, time: Double) -> SecurityEvent {
        SecurityEvent(kind: .scanDetected, phase: phase, time: time, since: d.since, source: key.source,
                      scanKind: key.kind, proto: key.kind == .udp ? .udp : .tcp, portsTouched: d.touched.count,
                      firstPort: d.firstPort, lastPort: d.lastPort, count: d.probes)
    }
}

/// A set of port numbers as a 65,536-bit map (8 KiB): a full-range scan costs no more than a small one.
struct PortSet: Sendable {
    private var words = [UInt64](repeating: 0, count: 1024)
    private(set) var count = 0

    mutating func insert(_ port: UInt16) {
        let (w, b) = (Int(port >> 6), UInt64(1) << UInt64(port & 63))
        if words[w] & b == 0 {
            words[w] |= b
            count += 1
        }
    }

    func contains(_ port: UInt16) -> Bool { words[Int(port >> 6)] & (UInt64(1) << UInt64(port & 63)) != 0 }
}

/// Connection storms (brute force, a runaway client): connection attempts from one source to one
/// local port, counted over a sliding window in twelve buckets. Reaching the threshold starts a
/// detection; falling below half of it ends it (hysteresis, so a steady rate near the threshold
/// does not flap).
public struct ConnectionStormDetector: Sendable {
    public var threshold: Int
    public var window: Double
    /// (source, port) pairs followed at once; attempts beyond are counted in `untracked`.
    public var pairLimit = 65_536

    private static let buckets = 12

    private struct Key: Hashable {
        var source: IPAddress
        var port: UInt16
    }

    private struct Track {
        var counts = [UInt32](repeating: 0, count: ConnectionStormDetector.buckets)
        /// The bucket number (time / bucket width) of the newest bucket.
        var head: Int64
        var first: Double
        var detection: Detection?
    }

    private struct Detection {
        var since: Double
        var started: Double
        var attempts: UInt64
        var peak: UInt64
    }

    private var tracks: [Key: Track] = [:]
    public private(set) var untracked: UInt64 = 0

    public init(threshold: Int = 100, window: Double = 60) {
        self.threshold = max(2, threshold)
        self.window = max(1, window)
    }

    private var width: Double { window / Double(Self.buckets) }

    /// One connection attempt (a SYN) from `source` to local `port` at `time`.
    public mutating func observe(source: IPAddress, port: UInt16, time: Double) {
        let key = Key(source: source, port: port)
        let bucket = Int64((time / width).rounded(.down))
        guard let index = tracks.index(forKey: key) else {
            guard tracks.count < pairLimit else {
                untracked &+= 1
                return
            }
            var track = Track(head: bucket, first: time)
            track.counts[Int(bucket.modulo(Self.buckets))] = 1
            tracks[key] = track
            return
        }
        Self.advance(&tracks.values[index], to: bucket)
        // A packet older than the window's oldest bucket (reordered blocks) falls in the oldest.
        let slot = Int(max(bucket, tracks.values[index].head - Int64(Self.buckets) + 1).modulo(Self.buckets))
        tracks.values[index].counts[slot] &+= 1
        if tracks.values[index].detection != nil { tracks.values[index].detection!.attempts &+= 1 }
    }

    private static func advance(_ track: inout Track, to bucket: Int64) {
        guard bucket > track.head else { return }
        let steps = min(bucket - track.head, Int64(buckets))
        for i in 1...steps { track.counts[Int((track.head + i).modulo(buckets))] = 0 }
        track.head = bucket
    }

    /// Storms that started or ended by `now`; forgets pairs with no attempt in the window.
    public mutating func evaluate(now: Double) -> [SecurityEvent] {
        let bucket = Int64((now / width).rounded(.down))
        var out: [SecurityEvent] = []
        var idle: [Key] = []
        for index in tracks.indices {
            let key = tracks.keys[index]
            Self.advance(&tracks.values[index], to: bucket)
            let track = tracks.values[index]
            let inWindow = track.counts.reduce(UInt64(0)) { $0 + UInt64($1) }
            if var d = track.detection {
                d.peak = max(d.peak, inWindow)
                tracks.values[index].detection = d
                if inWindow * 2 < UInt64(threshold) {
                    out.append(SecurityEvent(kind: .connectionStorm, phase: .ended, time: now, since: d.since,
                                             source: key.source, proto: .tcp, port: key.port,
                                             rate: Double(d.peak) / window, count: d.attempts))
                    tracks.values[index].detection = nil
                }
            } else if inWindow >= UInt64(threshold) {
                let d = Detection(since: max(track.first, now - window), started: now, attempts: inWindow, peak: inWindow)
                tracks.values[index].detection = d
                out.append(SecurityEvent(kind: .connectionStorm, phase: .started, time: now, since: d.since,
                                         source: key.source, proto: .tcp, port: key.port,
                                         rate: Double(inWindow) / window, count: inWindow))
            }
            if inWindow == 0 && tracks.values[index].detection == nil { idle.append(key) }
        }
        for key in idle { tracks.removeValue(forKey: key) }
        return out
    }

    /// Storms going on.
    public var active: [SecurityEvent] {
        tracks.compactMap { key, track in
            track.detection.map {
                SecurityEvent(kind: .connectionStorm, phase: .started, time: $0.started, since: $0.since,
                              source: key.source, proto: .tcp, port: key.port,
                              rate: Double($0.peak) / window, count: $0.attempts)
            }
        }.sorted { $0.since < $1.since }
    }
}

extension Int64 {
    /// Remainder in 0..<n, for negative values too.
    fileprivate func modulo(_ n: Int) -> Int64 {
        let r = self % Int64(n)
        return r < 0 ? r + Int64(n) : r
    }
}

#if canImport(Glibc)
import Glibc
#endif

/// Seconds on the monotonic clock.
func scanClock() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// A host's round-trip estimate and the timeout it implies, as TCP (RFC 6298) and nmap compute
/// them: smoothed RTT plus four times its variation, kept between a floor and the user's cap.
struct RTTEstimator {
    private(set) var srtt: Double?
    private var rttvar: Double = 0
    let minimum: Double
    let maximum: Double
    let initial: Double

    init(maximum: Double) {
        self.maximum = maximum
        // nmap's floor: below 100 ms a busy host's scheduling noise reads as loss.
        minimum = min(0.1, maximum)
        initial = min(1, maximum)
    }

    mutating func add(_ sample: Double) {
        guard let s = srtt else {
            srtt = sample
            rttvar = sample / 2
            return
        }
        let delta = sample - s
        srtt = s + delta / 8
        rttvar += (abs(delta) - rttvar) / 4
    }

    /// How long the next probe waits for an answer.
    var timeout: Double {
        guard let s = srtt else { return initial }
        return min(maximum, max(minimum, s + 4 * rttvar))
    }
}

/// Probes started per second at most, with a burst of a tenth of a second's worth.
struct TokenBucket {
    var rate: Double
    private var tokens: Double
    private var last: Double

    init(rate: Double, now: Double) {
        self.rate = rate
        tokens = max(1, rate / 10)
        last = now
    }

    private mutating func refill(_ now: Double) {
        tokens = min(max(1, rate / 10), tokens + (now - last) * rate)
        last = now
    }

    mutating func take(_ now: Double) -> Bool {
        refill(now)
        if tokens < 1 { return false }
        tokens -= 1
        return true
    }

    /// Seconds until a token is available.
    mutating func wait(_ now: Double) -> Double {
        refill(now)
        return tokens >= 1 ? 0 : (1 - tokens) / rate
    }
}

/// Deadlines of the probes in flight: a binary min-heap of (time, slot, generation); a slot
/// reused since its deadline was pushed has a new generation, so the old entry is skipped.
struct DeadlineHeap {
    struct Entry {
        var time: Double
        var slot: Int32
        var generation: UInt32
    }
    private var items: [Entry] = []

    var isEmpty: Bool { items.isEmpty }
    var first: Entry? { items.first }

    mutating func push(_ e: Entry) {
        items.append(e)
        var i = items.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            if items[parent].time <= items[i].time { break }
            items.swapAt(parent, i)
            i = parent
        }
    }

    mutating func pop() -> Entry? {
        guard !items.isEmpty else { return nil }
        let top = items[0]
        let last = items.removeLast()
        if !items.isEmpty {
            items[0] = last
            var i = 0
            while true {
                let l = 2 * i + 1, r = l + 1
                var m = i
                if l < items.count && items[l].time < items[m].time { m = l }
                if r < items.count && items[r].time < items[m].time { m = r }
                if m == i { break }
                items.swapAt(i, m)
                i = m
            }
        }
        return top
    }
}

/// How many probes may be in flight: grows with answers, shrinks on signs of loss and local
/// errors (nmap's congestion window, simplified).
struct ScanWindow {
    let cap: Int
    let floor: Double
    private(set) var size: Double
    /// No new probe before this time (after a local error such as ephemeral ports running out).
    private(set) var pausedUntil: Double = 0
    private var consecutiveLocalErrors = 0

    init(cap: Int, local: Bool) {
        self.cap = max(1, cap)
        floor = Double(min(self.cap, 10))
        size = local ? Double(self.cap) : Double(min(self.cap, 32))
    }

    var limit: Int { max(1, Int(size)) }

    mutating func answered() {
        consecutiveLocalErrors = 0
        size = min(Double(cap), size + 1)
    }

    /// A retry answered where the first probe got nothing: a probe or its answer was lost.
    mutating func lossSeen() { size = max(floor, size / 2) }

    /// A probe got no answer: the window stops growing for it, but does not shrink; a firewall
    /// that drops is not congestion (a lost probe shows as an answered retry, `lossSeen`).
    mutating func timedOut() {}

    /// EAGAIN, ENOBUFS, EADDRNOTAVAIL (no ephemeral port left), EMFILE: the local side is out of
    /// something. Halve, and pause a little longer each time it happens in a row.
    mutating func localError(now: Double) {
        consecutiveLocalErrors += 1
        size = max(1, size / 2)
        pausedUntil = now + min(1, 0.005 * Double(1 << min(consecutiveLocalErrors, 8)))
    }
}

/// errno values that say the local side ran out of something, not what the remote port is.
func isLocalShortage(_ code: Int32) -> Bool {
    code == EAGAIN || code == ENOBUFS || code == EADDRNOTAVAIL || code == ENOMEM || code == EMFILE || code == ENFILE
}

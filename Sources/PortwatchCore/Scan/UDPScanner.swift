#if canImport(Glibc)
import Glibc
#endif
import CSockDiag

/// A UDP probe in flight.
private struct UDPSlot {
    var fd: Int32 = -1
    var probe = -1
    var started: Double = 0
    var generation: UInt32 = 0
}

/// One host's ICMP pace: Linux answers at most about one ICMP error a second per peer (after a
/// burst of six, `net.ipv4.icmp_ratelimit`) and 1000 a second in all (`icmp_msgs_per_sec`).
/// Once a retry is answered where the first probe was not, the host is rate-limiting: probes to
/// it are paced to the rate its errors come back at, and silent ports get more attempts before
/// they are called open|filtered, as nmap does.
private struct ICMPPace {
    var limited = false
    var bucket: TokenBucket?
    /// Answer times in the last second, to measure the rate the host answers at.
    var recent: [Double] = []

    mutating func answer(now: Double) {
        recent.append(now)
        if recent.count > 2048 || (recent.first.map { now - $0 > 1 } ?? false) {
            recent.removeAll { now - $0 > 1 }
            if recent.count > 2048 { recent.removeFirst(recent.count - 2048) }
        }
        if let b = bucket { bucket!.rate = b.rate * 1.05 }
    }

    /// When the host was seen limiting; silences of probes sent before then say nothing new.
    var limitedSince = Double.infinity
    /// The last slow-down: at most one per 200 ms, so a round of silences counts once.
    var lastDecrease = -Double.infinity

    mutating func becomeLimited(now: Double, cap: Double?) {
        limited = true
        limitedSince = now
        lastDecrease = now
        let measured = Double(recent.filter { now - $0 <= 1 }.count)
        bucket = TokenBucket(rate: min(max(1, measured), cap ?? .infinity), now: now)
    }

    mutating func silence(now: Double, sent: Double) {
        guard let b = bucket, sent >= limitedSince, now - lastDecrease > 0.2 else { return }
        bucket!.rate = max(0.5, b.rate * 0.75)
        lastDecrease = now
    }
}

/// The UDP scan: connected UDP sockets with IP_RECVERR, so an ICMP port-unreachable (closed) or
/// admin-prohibited (filtered) is read from the error queue without root; a reply is open;
/// silence after the attempts is open|filtered.
struct UDPScanEngine {
    private let targets: [ScanTarget]
    private let options: ScanOptions
    private(set) var book: ScanBook
    private(set) var estimators: [RTTEstimator]
    private var paces: [ICMPPace]
    /// Per host, the ports called open|filtered for their silence: reopened if the host turns
    /// out to be rate-limiting (their silence may have been the limit, not the port).
    private var silentByHost: [[Int]]
    private var window: ScanWindow
    private var bucket: TokenBucket?
    private var heap = DeadlineHeap()
    private var slots: [UDPSlot] = []
    private var freeSlots: [Int32] = []
    private var inflight = 0
    private(set) var cancelled = false

    private static let cancelTag = UInt64.max

    var rateLimited: [Bool] { paces.map(\.limited) }

    init(targets: [ScanTarget], ports: [UInt16], options: ScanOptions) {
        self.targets = targets
        self.options = options
        book = ScanBook(hostCount: targets.count, ports: ports)
        estimators = Array(repeating: RTTEstimator(maximum: options.maxTimeout), count: targets.count)
        paces = Array(repeating: ICMPPace(), count: targets.count)
        silentByHost = Array(repeating: [], count: targets.count)
        window = ScanWindow(cap: options.concurrency, local: false)
        bucket = options.rate.map { TokenBucket(rate: $0, now: scanClock()) }
    }

    mutating func run(progress: ((ScanProgress) -> Void)?) throws(PortwatchError) {
        var epoll = try Epoll()
        defer { for s in slots where s.fd >= 0 { close(s.fd) } }
        if let cancel = options.cancelFD { try epoll.arm(cancel, Epoll.input, tag: Self.cancelTag, alreadyAdded: false) }
        let start = scanClock()
        var lastProgress = start
        while !cancelled {
            var now = scanClock()
            try launch(epoll, now: now)
            if inflight == 0 && !book.hasQueued { break }
            now = scanClock()
            let ready = try epoll.wait(milliseconds: waitMilliseconds(now: now))
            for i in 0..<ready {
                let (tag, _) = epoll.ready(i)
                try handle(tag: tag, epoll: epoll)
            }
            now = scanClock()
            expire(now: now)
            if let progress, now - lastProgress >= 0.1 {
                lastProgress = now
                progress(ScanProgress(done: book.done, total: book.total, elapsed: now - start, open: book.open))
            }
        }
    }

    private mutating func launch(_ epoll: borrowing Epoll, now: Double) throws(PortwatchError) {
        var started = 0
        while started < 1024, inflight < window.limit, now >= window.pausedUntil, let probe = book.peek() {
            let h = book.host(probe)
            // A rate-limiting host holds the line: its probes wait for its pace.
            if paces[h].bucket != nil, !paces[h].bucket!.take(now) { break }
            if bucket != nil, !bucket!.take(now) { break }
            _ = book.next(now: now)
            try start(probe, epoll)
            started += 1
        }
    }

    private mutating func start(_ probe: Int, _ epoll: borrowing Epoll) throws(PortwatchError) {
        let address = targets[book.host(probe)].address
        let v6 = address.ip.isV6
        let fd = socket(v6 ? AF_INET6 : AF_INET,
                        Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        if fd < 0 {
            let code = errno
            guard isLocalShortage(code) else { throw SystemCallError("socket", errno: code).asPortwatchError }
            book.localFailure(probe, now: scanClock(), reason: .noLocalAddress)
            window.localError(now: scanClock())
            return
        }
        enableICMPErrorQueue(fd, v6: v6)
        let port = book.port(probe)
        let t0 = scanClock()
        var rc = withSockaddr(address.ip, port, scopeID: address.scopeID) { connect(fd, $0, $1) }
        if rc == 0 {
            var payload = udpPayload(port: port)
            rc = payload.withUnsafeMutableBytes { Int32(send(fd, $0.baseAddress, $0.count, 0) < 0 ? -1 : 0) }
        }
        if rc != 0 {
            let code = errno
            close(fd)
            if isLocalShortage(code) && (code != EADDRNOTAVAIL || inflight > 0) {
                book.localFailure(probe, now: scanClock(), reason: .noLocalAddress)
                window.localError(now: scanClock())
                return
            }
            if code == ECONNREFUSED {
                book.decide(probe, .closed, reason: .icmpPortUnreachable, rtt: nil, now: scanClock())
                return
            }
            guard remoteAnswer(forErrno: code) != nil else { throw SystemCallError("send", errno: code).asPortwatchError }
            book.decide(probe, .filtered, reason: code == EACCES || code == EPERM ? .icmpAdminProhibited : .noRoute,
                        rtt: nil, now: scanClock())
            return
        }
        inflight += 1
        let slot: Int
        if let s = freeSlots.popLast() { slot = Int(s) } else { slots.append(UDPSlot()); slot = slots.count - 1 }
        slots[slot].fd = fd
        slots[slot].probe = probe
        slots[slot].started = t0
        let tag = UInt64(slots[slot].generation) << 32 | UInt64(slot)
        try epoll.arm(fd, Epoll.input, tag: tag, alreadyAdded: false)
        heap.push(.init(time: t0 + estimators[book.host(probe)].timeout, slot: Int32(slot), generation: slots[slot].generation))
    }

    private mutating func release(_ slot: Int) {
        close(slots[slot].fd)
        inflight -= 1
        slots[slot].generation &+= 1
        slots[slot].fd = -1
        slots[slot].probe = -1
        freeSlots.append(Int32(slot))
    }

    private mutating func handle(tag: UInt64, epoll: borrowing Epoll) throws(PortwatchError) {
        if tag == Self.cancelTag { cancelled = true; return }
        let slot = Int(tag & 0xffff_ffff)
        guard slot < slots.count, slots[slot].generation == UInt32(tag >> 32), slots[slot].fd >= 0 else { return }
        let fd = slots[slot].fd
        let probe = slots[slot].probe
        let started = slots[slot].started
        let answer: (RemoteState, ScanReason)
        if let icmp = readICMPError(fd, v6: targets[book.host(probe)].address.ip.isV6) {
            answer = icmp
        } else {
            var buffer = [UInt8](repeating: 0, count: 1500)
            let n = recv(fd, &buffer, buffer.count, Int32(MSG_DONTWAIT))
            if n >= 0 {
                answer = (.open, .reply)
            } else if errno == ECONNREFUSED {
                answer = (.closed, .icmpPortUnreachable)
            } else {
                return  // spurious wake-up: keep waiting for this probe's deadline
            }
        }
        release(slot)
        let now = scanClock()
        let h = book.host(probe)
        estimators[h].add(now - started)
        paces[h].answer(now: now)
        if book.attemptsMade(probe) > 1 {
            window.lossSeen()
            if !paces[h].limited {
                paces[h].becomeLimited(now: now, cap: options.rate)
                for silent in silentByHost[h] { book.reopen(silent) }
                silentByHost[h] = []
            }
        } else {
            window.answered()
        }
        book.decide(probe, answer.0, reason: answer.1, rtt: now - started, now: now)
    }

    private mutating func expire(now: Double) {
        while let top = heap.first, top.time <= now {
            _ = heap.pop()
            let slot = Int(top.slot)
            guard slots[slot].generation == top.generation, slots[slot].fd >= 0 else { continue }
            let probe = slots[slot].probe
            let sent = slots[slot].started
            release(slot)
            let h = book.host(probe)
            paces[h].silence(now: now, sent: sent)
            window.timedOut()
            let allowed = paces[h].limited ? options.rateLimitedAttempts : options.silentAttempts
            if book.attemptsMade(probe) < allowed {
                book.retry(probe)
            } else {
                book.decide(probe, .openFiltered, reason: .noAnswer, rtt: nil, now: now)
                if !paces[h].limited { silentByHost[h].append(probe) }
            }
        }
    }

    private func waitMilliseconds(now: Double) -> Int32 {
        var wait = 0.1
        if let probe = book.peek(), inflight < window.limit {
            var gate = max(0, window.pausedUntil - now)
            if var b = bucket { gate = max(gate, b.wait(now)) }
            if var b = paces[book.host(probe)].bucket { gate = max(gate, b.wait(now)) }
            wait = min(wait, gate)
        }
        if let first = heap.first { wait = min(wait, max(0, first.time - now)) }
        return Int32((wait * 1000).rounded(.up))
    }
}

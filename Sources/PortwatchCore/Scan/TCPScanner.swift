#if canImport(Glibc)
import Glibc
#endif
// sys/socket.h through the shim: the SOCK_* constants in every build mode.
import CSockDiag

/// A socket whose last connect was refused: back in the CLOSE state, so it can connect again.
/// Reusing it saves a socket() and a close() per closed port (the bulk of a scan).
private struct SpareSocket {
    var fd: Int32
    /// Whether epoll already knows the descriptor (then it is re-armed, not added).
    var added: Bool
}

/// A probe in flight.
private struct Slot {
    var fd: Int32 = -1
    var probe = -1
    var started: Double = 0
    var generation: UInt32 = 0
    /// Connected, now reading what the service says first (`--banners`).
    var readingBanner = false
    var added = false
}

/// The TCP connect scan: non-blocking connects on one epoll instance, a window of probes in
/// flight, an adaptive timeout per host, silent ports retried, local shortages backed off.
struct TCPScanEngine {
    private let targets: [ScanTarget]
    private let options: ScanOptions
    /// Loopback and own addresses answer within the connect call: ask at once instead of waiting.
    private let local: Bool
    private(set) var book: ScanBook
    private(set) var estimators: [RTTEstimator]
    private var window: ScanWindow
    private var bucket: TokenBucket?
    private var heap = DeadlineHeap()
    private var slots: [Slot] = []
    private var freeSlots: [Int32] = []
    private var spares4: [SpareSocket] = []
    private var spares6: [SpareSocket] = []
    private var inflight = 0
    private(set) var cancelled = false

    private static let cancelTag = UInt64.max
    private static let maxSpares = 256

    init(targets: [ScanTarget], ports: [UInt16], options: ScanOptions, local: Bool) {
        self.targets = targets
        self.options = options
        self.local = local
        book = ScanBook(hostCount: targets.count, ports: ports)
        estimators = Array(repeating: RTTEstimator(maximum: options.maxTimeout), count: targets.count)
        window = ScanWindow(cap: options.concurrency, local: local)
        bucket = options.rate.map { TokenBucket(rate: $0, now: scanClock()) }
    }

    /// Runs until every port is decided or the cancel descriptor becomes readable.
    mutating func run(progress: ((ScanProgress) -> Void)?) throws(PortwatchError) {
        var epoll = try Epoll()
        defer { closeAll() }
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
                let (tag, events) = epoll.ready(i)
                try handle(tag: tag, events: events, epoll: epoll)
            }
            now = scanClock()
            expire(now: now)
            if let progress, now - lastProgress >= 0.1 {
                lastProgress = now
                progress(ScanProgress(done: book.done, total: book.total, elapsed: now - start, open: book.open))
            }
        }
    }

    // MARK: - Starting probes

    private mutating func launch(_ epoll: borrowing Epoll, now: Double) throws(PortwatchError) {
        var started = 0
        // Bounded so a loopback scan, where every connect answers at once, still looks at
        // the cancel descriptor and reports progress.
        while started < 4096, inflight < window.limit, book.hasQueued, now >= window.pausedUntil {
            if bucket != nil, !bucket!.take(now) { break }
            guard let probe = book.next(now: now) else { break }
            try start(probe, epoll)
            started += 1
        }
    }

    private mutating func start(_ probe: Int, _ epoll: borrowing Epoll) throws(PortwatchError) {
        let address = targets[book.host(probe)].address
        let v6 = address.ip.isV6
        var spare = (v6 ? spares6.popLast() : spares4.popLast()) ?? SpareSocket(fd: -1, added: false)
        if spare.fd < 0 {
            spare.fd = socket(v6 ? AF_INET6 : AF_INET,
                              Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            if spare.fd >= 0 { enableICMPErrorQueue(spare.fd, v6: v6) }
            if spare.fd < 0 {
                let code = errno
                guard isLocalShortage(code) else { throw SystemCallError("socket", errno: code).asPortwatchError }
                book.localFailure(probe, now: scanClock(), reason: .noLocalAddress)
                window.localError(now: scanClock())
                return
            }
        }
        let fd = spare.fd
        let t0 = scanClock()
        let port = book.port(probe)
        var rc = withSockaddr(address.ip, port, scopeID: address.scopeID) { connect(fd, $0, $1) }
        var code = rc == 0 ? 0 : errno
        if code == EINPROGRESS && local {
            // Loopback finished the handshake (or the reset) inside the first call; a second
            // connect reports it: EISCONN, ECONNREFUSED, or EALREADY if still pending.
            rc = withSockaddr(address.ip, port, scopeID: address.scopeID) { connect(fd, $0, $1) }
            code = rc == 0 ? EISCONN : errno
        }
        switch code {
        case 0, EISCONN:
            opened(probe, fd: fd, added: spare.added, started: t0, epoll)
        case EINPROGRESS, EALREADY:
            let slot = takeSlot()
            slots[slot].fd = fd
            slots[slot].probe = probe
            slots[slot].started = t0
            slots[slot].readingBanner = false
            slots[slot].added = spare.added
            try arm(slot, Epoll.output, epoll)
            heap.push(.init(time: t0 + estimators[book.host(probe)].timeout, slot: Int32(slot), generation: slots[slot].generation))
        case ECONNREFUSED:
            answered(probe, .closed, .refused, started: t0)
            keepSpare(spare, v6: v6)
        case ECONNABORTED:
            // A reused socket that was not back in the unconnected state: not the port's answer.
            close(fd)
            book.localFailure(probe, now: scanClock(), reason: .noLocalAddress)
        default:
            close(fd)
            try failed(probe, code: code)
        }
    }

    private mutating func takeSlot() -> Int {
        inflight += 1
        if let s = freeSlots.popLast() { return Int(s) }
        slots.append(Slot())
        return slots.count - 1
    }

    private mutating func releaseSlot(_ slot: Int) {
        inflight -= 1
        slots[slot].generation &+= 1
        slots[slot].fd = -1
        slots[slot].probe = -1
        freeSlots.append(Int32(slot))
    }

    private mutating func arm(_ slot: Int, _ mask: UInt32, _ epoll: borrowing Epoll) throws(PortwatchError) {
        let tag = UInt64(slots[slot].generation) << 32 | UInt64(slot)
        try epoll.arm(slots[slot].fd, mask | Epoll.oneShot, tag: tag, alreadyAdded: slots[slot].added)
        slots[slot].added = true
    }

    private mutating func keepSpare(_ spare: SpareSocket, v6: Bool) {
        if v6 {
            if spares6.count < Self.maxSpares { spares6.append(spare) } else { close(spare.fd) }
        } else {
            if spares4.count < Self.maxSpares { spares4.append(spare) } else { close(spare.fd) }
        }
    }

    // MARK: - Answers

    private mutating func answered(_ probe: Int, _ state: RemoteState, _ reason: ScanReason, started: Double) {
        let now = scanClock()
        let rtt = now - started
        // Every attempt is a new socket, so its answer is unambiguous (no Karn problem).
        estimators[book.host(probe)].add(rtt)
        if book.attemptsMade(probe) > 1 { window.lossSeen() } else { window.answered() }
        book.decide(probe, state, reason: reason, rtt: rtt, now: now)
    }

    private mutating func opened(_ probe: Int, fd: Int32, added: Bool, started: Double, _ epoll: borrowing Epoll) {
        if local && isSelfConnected(fd, port: book.port(probe)) {
            // The kernel picked the probed port as the source port, and the SYN met itself
            // (TCP simultaneous open): nothing listens there.
            abortClose(fd)
            answered(probe, .closed, .refused, started: started)
            return
        }
        answered(probe, .open, .connected, started: started)
        guard options.banners else { return abortClose(fd) }
        let slot = takeSlot()
        slots[slot].fd = fd
        slots[slot].probe = probe
        slots[slot].readingBanner = true
        slots[slot].added = added
        do {
            try arm(slot, Epoll.input, epoll)
        } catch {
            abortClose(fd)
            releaseSlot(slot)
            return
        }
        heap.push(.init(time: scanClock() + options.bannerWait, slot: Int32(slot), generation: slots[slot].generation))
    }

    /// An errno from connect that is neither open nor refused.
    private mutating func failed(_ probe: Int, code: Int32) throws(PortwatchError) {
        let now = scanClock()
        if isLocalShortage(code) && code != EADDRNOTAVAIL || (code == EADDRNOTAVAIL && inflight > 0) {
            book.localFailure(probe, now: now, reason: .noLocalAddress)
            window.localError(now: now)
            return
        }
        guard remoteAnswer(forErrno: code) != nil else { throw SystemCallError("connect", errno: code).asPortwatchError }
        // ICMP unreachables and prohibiting routes: nmap calls them filtered.
        let reason: ScanReason = switch code {
        case EHOSTUNREACH: .icmpHostUnreachable
        case ENETUNREACH: .icmpNetUnreachable
        case EACCES, EPERM: .icmpAdminProhibited
        case EADDRNOTAVAIL: .noLocalAddress
        case ETIMEDOUT: .noAnswer
        default: .noRoute
        }
        book.decide(probe, .filtered, reason: reason, rtt: nil, now: now)
    }

    private mutating func handle(tag: UInt64, events: UInt32, epoll: borrowing Epoll) throws(PortwatchError) {
        if tag == Self.cancelTag { cancelled = true; return }
        let slot = Int(tag & 0xffff_ffff)
        guard slot < slots.count, slots[slot].generation == UInt32(tag >> 32), slots[slot].fd >= 0 else { return }
        let fd = slots[slot].fd
        let probe = slots[slot].probe
        if slots[slot].readingBanner {
            var buffer = [UInt8](repeating: 0, count: 512)
            let n = recv(fd, &buffer, buffer.count, Int32(MSG_DONTWAIT))
            if n > 0, let text = bannerText(buffer[0..<n]) { book.banners[probe] = text }
            abortClose(fd)
            releaseSlot(slot)
            return
        }
        // connect() again rather than SO_ERROR: it reports the outcome (EISCONN, or the error)
        // and also returns a failed socket to the unconnected state, so it can be reused; after
        // SO_ERROR the next connect on it would fail with ECONNABORTED.
        let address = targets[book.host(probe)].address
        let rc = withSockaddr(address.ip, book.port(probe), scopeID: address.scopeID) { connect(fd, $0, $1) }
        var soError = rc == 0 ? 0 : errno
        if soError == EISCONN { soError = 0 }
        if soError == EALREADY || soError == EINPROGRESS {
            if let (state, reason) = readICMPError(fd, v6: address.ip.isV6) {
                // An ICMP error the SYN's connect() was too busy to take: still an answer.
                let started = slots[slot].started
                releaseSlot(slot)
                close(fd)
                answered(probe, state, reason, started: started)
                return
            }
            // Not decided yet (a spurious wake-up): wait on.
            try arm(slot, Epoll.output, epoll)
            return
        }
        let started = slots[slot].started
        let added = slots[slot].added
        releaseSlot(slot)
        switch soError {
        case 0:
            opened(probe, fd: fd, added: added, started: started, epoll)
        case ECONNREFUSED:
            answered(probe, .closed, .refused, started: started)
            keepSpare(SpareSocket(fd: fd, added: added), v6: targets[book.host(probe)].address.ip.isV6)
        default:
            close(fd)
            // The host answered (an ICMP error came back), so the round trip still counts.
            if remoteAnswer(forErrno: soError) != nil { estimators[book.host(probe)].add(scanClock() - started) }
            try failed(probe, code: soError)
        }
    }

    private mutating func expire(now: Double) {
        while let top = heap.first, top.time <= now {
            _ = heap.pop()
            let slot = Int(top.slot)
            guard slots[slot].generation == top.generation, slots[slot].fd >= 0 else { continue }
            let fd = slots[slot].fd
            let probe = slots[slot].probe
            let banner = slots[slot].readingBanner
            releaseSlot(slot)
            if banner {
                abortClose(fd)
                continue
            }
            close(fd)
            window.timedOut()
            if book.attemptsMade(probe) < options.silentAttempts {
                book.retry(probe)
            } else {
                book.decide(probe, .filtered, reason: .noAnswer, rtt: nil, now: now)
            }
        }
    }

    private func waitMilliseconds(now: Double) -> Int32 {
        var wait = 0.1
        if book.hasQueued && inflight < window.limit {
            var gate = max(0, window.pausedUntil - now)
            if var b = bucket { gate = max(gate, b.wait(now)) }
            wait = min(wait, gate)
        }
        if let first = heap.first { wait = min(wait, max(0, first.time - now)) }
        return Int32((wait * 1000).rounded(.up))
    }

    private mutating func closeAll() {
        for s in slots where s.fd >= 0 { abortClose(s.fd) }
        for s in spares4 + spares6 { close(s.fd) }
        slots = []
        spares4 = []
        spares6 = []
    }
}

/// True when the socket's own port is the one it connected to: a self-connection, which only
/// happens on this host's own addresses.
private func isSelfConnected(_ fd: Int32, port: UInt16) -> Bool {
    var storage = sockaddr_storage()
    var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
    let rc = withUnsafeMutablePointer(to: &storage) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
    }
    guard rc == 0 else { return false }
    // sin_port and sin6_port sit at the same offset, right after the family.
    let local = withUnsafeBytes(of: &storage) { UInt16(bigEndian: $0.loadUnaligned(fromByteOffset: 2, as: UInt16.self)) }
    return local == port
}

/// Closes with a reset (SO_LINGER 0): no TIME_WAIT left behind for every open port scanned.
func abortClose(_ fd: Int32) {
    var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
    close(fd)
}

/// The first line of a banner, printable ASCII only, at most 200 characters; nil when empty.
func bannerText(_ bytes: ArraySlice<UInt8>) -> String? {
    var out = ""
    for b in bytes {
        if b == 0x0A || b == 0x0D { if out.isEmpty { continue } else { break } }
        out.unicodeScalars.append(b >= 0x20 && b < 0x7F ? Unicode.Scalar(b) : ".")
        if out.utf8.count >= 200 { break }
    }
    let trimmed = out.trimmingSuffix(while: { $0 == " " })
    return trimmed.isEmpty ? nil : trimmed
}

extension String {
    fileprivate func trimmingSuffix(while predicate: (Character) -> Bool) -> String {
        var s = self[...]
        while let last = s.last, predicate(last) { s = s.dropLast() }
        return String(s)
    }
}

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

    mutating func becomeLimited(now: Double, cap: Double?) {
        limited = true
        let measured = Double(recent.filter { now - $0 <= 1 }.count)
        bucket = TokenBucket(rate: min(max(1, measured), cap ?? .infinity), now: now)
    }

    mutating func silence() {
        if let b = bucket { bucket!.rate = max(0.5, b.rate * 0.75) }
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
        // Every ICMP error about this socket's datagrams goes to its error queue, with type and code.
        var one: Int32 = 1
        if v6 {
            setsockopt(fd, Int32(IPPROTO_IPV6), IPV6_RECVERR, &one, socklen_t(MemoryLayout<Int32>.size))
        } else {
            setsockopt(fd, Int32(IPPROTO_IP), IP_RECVERR, &one, socklen_t(MemoryLayout<Int32>.size))
        }
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
            release(slot)
            let h = book.host(probe)
            paces[h].silence()
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

/// Reads one queued ICMP error for a connected UDP socket: port-unreachable is closed, every
/// other unreachable (admin-prohibited, host, net) filtered, as nmap classifies them; nil when
/// the queue is empty.
private func readICMPError(_ fd: Int32, v6: Bool) -> (RemoteState, ScanReason)? {
    var data = [UInt8](repeating: 0, count: 256)
    var control = [UInt8](repeating: 0, count: 512)
    var name = sockaddr_storage()
    return data.withUnsafeMutableBytes { dataRaw in
        control.withUnsafeMutableBytes { controlRaw in
            withUnsafeMutablePointer(to: &name) { namePtr in
                var iov = iovec(iov_base: dataRaw.baseAddress, iov_len: dataRaw.count)
                return withUnsafeMutablePointer(to: &iov) { iovPtr in
                    var msg = msghdr()
                    msg.msg_name = UnsafeMutableRawPointer(namePtr)
                    msg.msg_namelen = socklen_t(MemoryLayout<sockaddr_storage>.size)
                    msg.msg_iov = iovPtr
                    msg.msg_iovlen = 1
                    msg.msg_control = controlRaw.baseAddress
                    msg.msg_controllen = controlRaw.count
                    guard recvmsg(fd, &msg, Int32(MSG_ERRQUEUE) | Int32(MSG_DONTWAIT)) >= 0 else { return nil }
                    return parseExtendedError(UnsafeRawBufferPointer(rebasing: controlRaw.prefix(Int(msg.msg_controllen))), v6: v6)
                }
            }
        }
    }
}

/// Walks the control messages for IP_RECVERR / IPV6_RECVERR and reads the `sock_extended_err`
/// in it (ee_errno u32, ee_origin u8, ee_type u8, ee_code u8, ...).
func parseExtendedError(_ control: UnsafeRawBufferPointer, v6: Bool) -> (RemoteState, ScanReason)? {
    let headerSize = MemoryLayout<cmsghdr>.size
    var offset = 0
    while offset + headerSize <= control.count {
        let length = Int(control.loadUnaligned(fromByteOffset: offset, as: Int.self))
        let level = control.loadUnaligned(fromByteOffset: offset + MemoryLayout<Int>.size, as: Int32.self)
        let type = control.loadUnaligned(fromByteOffset: offset + MemoryLayout<Int>.size + 4, as: Int32.self)
        guard length >= headerSize, offset + length <= control.count else { return nil }
        let isRecvErr = (level == Int32(IPPROTO_IP) && type == IP_RECVERR) || (level == Int32(IPPROTO_IPV6) && type == IPV6_RECVERR)
        if isRecvErr && length >= headerSize + 8 {
            let body = offset + headerSize
            let origin = control[body + 4], icmpType = control[body + 5], code = control[body + 6]
            return classifyICMP(origin: origin, type: icmpType, code: code)
        }
        offset += (length + MemoryLayout<Int>.size - 1) & ~(MemoryLayout<Int>.size - 1)
    }
    return nil
}

/// SO_EE_ORIGIN_ICMP (2) and SO_EE_ORIGIN_ICMP6 (3) type/code to a port state.
func classifyICMP(origin: UInt8, type: UInt8, code: UInt8) -> (RemoteState, ScanReason) {
    switch (origin, type, code) {
    case (2, 3, 3), (3, 1, 4): return (.closed, .icmpPortUnreachable)
    case (2, 3, 9), (2, 3, 10), (2, 3, 13), (3, 1, 1): return (.filtered, .icmpAdminProhibited)
    case (2, 3, 1), (3, 1, 3): return (.filtered, .icmpHostUnreachable)
    case (2, 3, 0), (3, 1, 0): return (.filtered, .icmpNetUnreachable)
    default: return (.filtered, .icmpOther)
    }
}

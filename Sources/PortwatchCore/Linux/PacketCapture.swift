#if canImport(Glibc)
import Glibc
#endif
import CSockDiag
import Synchronization

// The capture itself: an AF_PACKET socket with a TPACKET_V3 ring, walked by a background thread.

/// Walks one TPACKET_V3 block of `blockSize` bytes and counts every packet in it (and shows it to
/// the security detectors, when there are any). Packets whose header or data would lie outside
/// the block are skipped (and end the walk), never read.
func countBlock(_ block: UnsafeRawPointer, blockSize: Int, into counters: inout CaptureCounters,
                detectors: inout PacketDetectors?) {
    let headerLength = csd_tpacket3_header_length()
    let packets = Int(csd_block_packet_count(block))
    var offset = Int(csd_block_first_offset(block))
    var info = csd_tpacket_info()
    for _ in 0..<packets {
        guard offset > 0, offset + headerLength <= blockSize else { return }
        csd_tpacket_read(block + offset, &info)
        let start = offset + Int(info.net_offset)
        let length = Int(info.snaplen)
        guard start <= blockSize, length <= blockSize - start else { return }
        counters.packetsSeen &+= 1
        if info.protocol == 0x0800 || info.protocol == 0x86dd,
           let direction = PacketDirection.classify(packetType: info.pkttype, hardwareType: info.hatype),
           let packet = parseFrame(UnsafeRawBufferPointer(start: block + start, count: length)) {
            counters.record(packet, direction: direction)
            if detectors != nil {
                detectors!.observe(packet, direction: direction, time: Double(info.sec) + Double(info.nsec) / 1e9)
            }
        }
        if info.next_offset == 0 { return }
        offset += Int(info.next_offset)
    }
}

// MARK: - The capture

/// Packet capture on one interface or all: counts UDP traffic per local port and closed-port hits.
///
/// ```swift
/// let capture = try PacketCapture(interface: "lo")   // needs root or CAP_NET_RAW
/// capture.start()
/// let before = capture.snapshot()
/// // ...
/// let change = capture.snapshot().delta(since: before)
/// capture.stop()
/// ```
///
/// Totals are cumulative from `start()`. They lag the wire by up to `retireMilliseconds` (the
/// kernel hands a partly filled ring block over after that long). When the ring is full the kernel
/// drops packets and says so: `kernelDrops`.
///
/// Limits: on every interface at once (nil), a router's forwarded packets count as well, and a
/// bridged or veth path can show one datagram on several interfaces: name an interface for exact
/// numbers. IPv6 packets with extension headers before UDP/TCP/ICMPv6 (including fragments) are
/// not counted. A UDP GSO send shows as one packet (its bytes are exact).
public final class PacketCapture: Sendable {
    // Sendable without @unchecked: every stored property is immutable and Sendable. The state that
    // is not (the mapped ring) lives in `CaptureRing`, which says why sharing it is safe.
    public let interface: String?
    private let ring: CaptureRing

    /// Opens the capture socket, attaches the filter and maps the ring; does not start reading.
    /// - Parameters:
    ///   - interface: an interface name (`lo`, `eth0`), or nil for every interface.
    ///   - ringBytes: ring size (rounded to whole blocks of `blockBytes`); each small packet takes
    ///     about 180 bytes, so the default 4 MiB holds ~23,000 packets of backlog.
    ///   - retireMilliseconds: the longest a packet waits in a partly filled block.
    ///   - detectors: security detectors (scans, storms, SYNs for the flood detector) fed every
    ///     packet as it is counted; their findings come from `drainFindings(now:)`.
    public init(interface: String? = nil, ringBytes: Int = 4 << 20, blockBytes: Int = 256 << 10,
                retireMilliseconds: UInt32 = 50, detectors: DetectorSettings? = nil) throws(PortwatchError) {
        self.interface = interface
        self.ring = try CaptureRing(interface: interface, ringBytes: ringBytes, blockBytes: blockBytes,
                                    retireMilliseconds: retireMilliseconds)
        if let detectors { ring.setDetectors(PacketDetectors(settings: detectors)) }
    }

    deinit { ring.stop() }

    /// Starts the background thread that drains the ring into the counters. Idempotent; a stopped
    /// capture stays stopped.
    public func start() { ring.start() }

    /// Cumulative totals since `start()`, with the kernel's drop count brought up to date.
    public func snapshot() -> CaptureCounters { ring.snapshot() }

    /// The detectors' findings since the last call (nil when the capture has no detectors).
    /// `now` is the wall clock (seconds since the epoch), the clock of the packets' timestamps.
    public func drainFindings(now: Double) -> PacketFindings? { ring.drainFindings(now: now) }

    /// Stops and joins the thread (packets still in the ring are counted first). Idempotent.
    public func stop() { ring.stop() }

    /// CPU time (user + system) the capture thread has used, in seconds; nil before `start()` or
    /// after `stop()`. The kernel's share of the work (filtering, copying into the ring) is charged
    /// to the threads that send and receive the packets, not to this one.
    public var threadCPUSeconds: Double? { ring.threadCPUSeconds() }
}

/// The socket, its mapped ring and the counters.
private final class CaptureRing: @unchecked Sendable {
    // Safe to share: `fd`, `memory` and the sizes never change after init. The ring memory is read
    // and handed back only by the capture thread (one at a time: `start` creates at most one, and
    // `stop` joins it before the final drain on the stopping thread); it is unmapped in deinit, when
    // no thread can hold a reference. Counters and the thread handle live in Mutexes; the stop flag
    // is an Atomic.
    let descriptor: OwnedDescriptor
    var fd: Int32 { descriptor.raw }
    let memory: UnsafeMutableRawPointer
    let blockSize: Int
    let blockCount: Int
    private let state = Mutex(State())
    private let thread = Mutex(ThreadState.idle)
    private let stopping = Atomic<Bool>(false)

    private struct State {
        var counters = CaptureCounters()
        var detectors: PacketDetectors? = nil
        /// The next block the reader expects the kernel to hand over.
        var nextBlock = 0
    }

    private enum ThreadState {
        case idle
        case running(pthread_t)
        case stopped
    }

    convenience init(interface: String?, ringBytes: Int, blockBytes: Int, retireMilliseconds: UInt32) throws(PortwatchError) {
        let page = max(4096, Int(sysconf(Int32(_SC_PAGESIZE))))
        // Blocks must be whole pages; keep them between one page and 4 MiB, 2...1024 of them.
        let blockSize = min(max(page, (blockBytes + page - 1) / page * page), 4 << 20)
        let blockCount = min(max(2, ringBytes / blockSize), 1024)

        var ifindex: Int32 = 0
        if let interface {
            ifindex = Int32(bitPattern: if_nametoindex(interface))
            if ifindex <= 0 { throw .usage("no such network interface: \(interface)") }
        }
        // Protocol 0: the socket receives nothing until bind() names ETH_P_ALL, after the filter
        // and the ring are in place, so no unfiltered packet is ever queued.
        let descriptor: OwnedDescriptor
        let mapped: UnsafeMutableRawPointer
        do throws(SystemCallError) {
            descriptor = OwnedDescriptor(try syscallRetrying("socket(AF_PACKET)") {
                socket(AF_PACKET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            })
            let fd = descriptor.raw
            let loopback = if_nametoindex("lo")
            let program = captureFilterProgram(loopbackIndex: loopback == 0 ? nil : loopback)
            let packed = program.packedForKernel
            try syscallRetrying("setsockopt(SO_ATTACH_FILTER)") {
                packed.withUnsafeBytes { csd_packet_attach_filter(fd, $0.baseAddress, UInt16(program.count)) }
            }
            try syscallRetrying("setsockopt(PACKET_RX_RING)") {
                csd_packet_setup_ring(fd, UInt32(blockSize), UInt32(blockCount), 2048, retireMilliseconds)
            }
            // The ring's pages are kernel memory (never swapped): no need to lock them.
            let ring = mmap(nil, blockSize * blockCount, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
            guard let ring, ring != MAP_FAILED else { throw SystemCallError("mmap(packet ring)", errno: errno) }
            mapped = ring
        } catch {
            if error.call == "socket(AF_PACKET)" && (error.errno == EPERM || error.errno == EACCES) {
                throw .permission("packet capture needs root or CAP_NET_RAW")
            }
            throw error.asPortwatchError(needs: "CAP_NET_RAW")
        }
        self.init(fd: descriptor, memory: mapped, blockSize: blockSize, blockCount: blockCount)
        // From here deinit unmaps (and the descriptor closes) on failure. ifindex 0 = every interface.
        do {
            try syscallRetrying("bind(AF_PACKET)") { csd_packet_bind(descriptor.raw, ifindex) }
        } catch {
            throw error.asPortwatchError(needs: "CAP_NET_RAW")
        }
    }

    private init(fd descriptor: OwnedDescriptor, memory: UnsafeMutableRawPointer, blockSize: Int, blockCount: Int) {
        self.descriptor = descriptor
        self.memory = memory
        self.blockSize = blockSize
        self.blockCount = blockCount
    }

    deinit {
        munmap(memory, blockSize * blockCount)
    }

    func start() {
        thread.withLock { handle in
            guard case .idle = handle else { return }
            var tid = pthread_t()
            let box = Unmanaged.passRetained(self).toOpaque()
            let rc = pthread_create(&tid, nil, { arg in
                guard let arg else { return nil }
                let ring = Unmanaged<CaptureRing>.fromOpaque(arg).takeRetainedValue()
                ring.readLoop()
                return nil
            }, box)
            if rc == 0 {
                handle = .running(tid)
            } else {
                Unmanaged<CaptureRing>.fromOpaque(box).release()
                handle = .stopped
            }
        }
    }

    func stop() {
        let tid: pthread_t? = thread.withLock { handle in
            defer { handle = .stopped }
            if case .running(let tid) = handle { return tid }
            return nil
        }
        guard let tid else { return }
        stopping.store(true, ordering: .releasing)
        if pthread_equal(tid, pthread_self()) == 0 {
            pthread_join(tid, nil)
            drain(countingInto: true)  // what the kernel handed over while the thread was leaving
        } else {
            pthread_detach(tid)
        }
    }

    func snapshot() -> CaptureCounters {
        state.withLock { s in
            // PACKET_STATISTICS resets on read: add under the lock so no read is lost.
            var packets: UInt64 = 0, drops: UInt64 = 0
            if csd_packet_statistics(fd, &packets, &drops) == 0 { s.counters.kernelDrops &+= drops }
            return s.counters
        }
    }

    func setDetectors(_ detectors: PacketDetectors) {
        state.withLock { $0.detectors = detectors }
    }

    func drainFindings(now: Double) -> PacketFindings? {
        state.withLock { s in s.detectors == nil ? nil : s.detectors!.drain(now: now) }
    }

    func threadCPUSeconds() -> Double? {
        thread.withLock { handle -> Double? in
            guard case .running(let tid) = handle else { return nil }
            var clock = clockid_t()
            guard pthread_getcpuclockid(tid, &clock) == 0 else { return nil }
            var ts = timespec()
            guard clock_gettime(clock, &ts) == 0 else { return nil }
            return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
        }
    }

    private func readLoop() {
        var pfd = pollfd(fd: fd, events: Int16(POLLIN | POLLERR), revents: 0)
        while !stopping.load(ordering: .acquiring) {
            if !drain(countingInto: true) {
                // Nothing ready: sleep until the kernel retires a block (or 100 ms, to see `stop`).
                pfd.revents = 0
                if (try? syscallRetrying("poll(packet ring)") { poll(&pfd, 1, 100) }) ?? 0 > 0,
                   pfd.revents & Int16(POLLERR) != 0 {
                    // E.g. ENETDOWN when the bound interface goes down (capture resumes when it
                    // comes back up). Reading SO_ERROR clears it, so poll does not spin.
                    var code: Int32 = 0
                    var length = socklen_t(MemoryLayout<Int32>.size)
                    if (try? syscallRetrying("getsockopt(SO_ERROR)") { getsockopt(fd, SOL_SOCKET, SO_ERROR, &code, &length) }) != nil,
                       code != 0 {
                        let message = SystemCallError("packet capture", errno: code).description
                        state.withLock { s in
                            s.counters.socketErrors &+= 1
                            s.counters.lastSocketError = message
                        }
                    }
                }
            }
        }
    }

    /// Counts (or discards) every block the kernel has handed over, in ring order, and gives each
    /// back. Returns whether any block was ready.
    @discardableResult
    private func drain(countingInto counting: Bool) -> Bool {
        var any = false
        // Bounded: at most one pass over the ring per call.
        for _ in 0..<blockCount {
            let ready: Bool = state.withLock { s in
                let block = memory + s.nextBlock * blockSize
                guard csd_block_ready(block) != 0 else { return false }
                if counting {
                    countBlock(UnsafeRawPointer(block), blockSize: blockSize, into: &s.counters, detectors: &s.detectors)
                }
                csd_block_release(block)
                s.nextBlock = (s.nextBlock + 1) % blockCount
                return true
            }
            if !ready { break }
            any = true
        }
        return any
    }
}

#if canImport(Glibc)
import Glibc
#endif
import CSockDiag
import Synchronization

/// What the destroy stream delivered since the last drain.
public struct DestroyBatch: Sendable {
    /// Final state of every TCP socket closed since the last drain (with its tcp_info).
    public var sockets: [SocketRecord]
    /// How many times the kernel reported ENOBUFS: events were lost, counts may be low.
    public var overflows: Int
}

/// The kernel's sock_diag destroy multicast (SKNLGRP_INET_TCP_DESTROY, SKNLGRP_INET6_TCP_DESTROY,
/// what `ss -E` shows): the final counters of every TCP socket as it closes, so traffic of
/// connections that open and close between two samples is still counted.
///
/// A dedicated thread drains the socket into memory so the kernel's queue never fills between
/// samples; an overflow (ENOBUFS) is counted and reported rather than silently undercounted.
public final class DestroyEventStream: @unchecked Sendable {
    // Safe to share: `fd` is immutable after init; every mutable field lives in `state` (a Mutex);
    // the reader thread only touches `fd` and `state`, and is joined by `stop()`.
    private let descriptor: OwnedDescriptor
    private var fd: Int32 { descriptor.raw }
    private let state = Mutex(State())
    private let threadHandle = Mutex<pthread_t?>(nil)

    private struct State {
        var sockets: [SocketRecord] = []
        var overflows = 0
        var stopping = false
    }

    /// Subscribes to the TCP destroy groups (IPv4 and IPv6). Needs CAP_NET_ADMIN.
    public init(receiveBuffer: Int32 = 32 << 20) throws(PortwatchError) {
        let descriptor: OwnedDescriptor
        do {
            descriptor = OwnedDescriptor(try syscallRetrying("socket(NETLINK_SOCK_DIAG)") {
                socket(AF_NETLINK, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), NETLINK_SOCK_DIAG)
            })
        } catch {
            throw error.asPortwatchError(needs: "CAP_NET_ADMIN")
        }
        let fd = descriptor.raw
        // As root, SO_RCVBUFFORCE goes past rmem_max; otherwise the kernel caps SO_RCVBUF (and a
        // smaller buffer only makes overflows, which are counted, likelier).
        var size = receiveBuffer
        let length = socklen_t(MemoryLayout<Int32>.size)
        if (try? syscallRetrying("setsockopt(SO_RCVBUFFORCE)") { setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, length) }) == nil {
            _ = try? syscallRetrying("setsockopt(SO_RCVBUF)") { setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, length) }
        }
        var address = sockaddr_nl()
        address.nl_family = sa_family_t(AF_NETLINK)
        // TCP only: a closed TCP socket's event carries its final tcp_info. A UDP socket's
        // carries nothing but its protocol (no drop count), so its groups would only add noise.
        address.nl_groups = [SKNLGRP_INET_TCP_DESTROY, SKNLGRP_INET6_TCP_DESTROY]
            .reduce(UInt32(0)) { $0 | UInt32(1) << ($1.rawValue - 1) }
        do {
            try syscallRetrying("bind(sock_diag destroy groups)") {
                withUnsafePointer(to: &address) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        bind(fd, $0, socklen_t(MemoryLayout<sockaddr_nl>.size))
                    }
                }
            }
        } catch {
            if error.errno == EPERM || error.errno == EACCES {
                throw .permission("closed connections' counters need root or CAP_NET_ADMIN (sock_diag destroy events)")
            }
            throw error.asPortwatchError(needs: "CAP_NET_ADMIN")
        }
        self.descriptor = descriptor
    }

    deinit {
        // The reader thread goes first; the descriptor closes itself after.
        stop()
    }

    /// Starts the reader thread (idempotent).
    public func start() {
        threadHandle.withLock { handle in
            guard handle == nil else { return }
            var tid = pthread_t()
            let box = Unmanaged.passRetained(self).toOpaque()
            let rc = pthread_create(&tid, nil, { arg in
                guard let arg else { return nil }
                let stream = Unmanaged<DestroyEventStream>.fromOpaque(arg).takeRetainedValue()
                stream.readLoop()
                return nil
            }, box)
            if rc == 0 {
                handle = tid
            } else {
                Unmanaged<DestroyEventStream>.fromOpaque(box).release()
            }
        }
    }

    /// Stops and joins the reader thread.
    public func stop() {
        let tid: pthread_t? = threadHandle.withLock { handle in
            defer { handle = nil }
            return handle
        }
        guard let tid else { return }
        state.withLock { $0.stopping = true }
        // Never join ourselves (deinit may run on the reader thread when it held the last reference).
        if pthread_equal(tid, pthread_self()) == 0 { pthread_join(tid, nil) } else { pthread_detach(tid) }
    }

    /// Takes everything received since the last drain, reading what is still queued first.
    public func drain() -> DestroyBatch {
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        readAvailable(&buffer, blockingMilliseconds: 0)
        return state.withLock { s in
            defer {
                s.sockets.removeAll(keepingCapacity: true)
                s.overflows = 0
            }
            return DestroyBatch(sockets: s.sockets, overflows: s.overflows)
        }
    }

    private func readLoop() {
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        while !state.withLock({ $0.stopping }) {
            readAvailable(&buffer, blockingMilliseconds: 100)
        }
    }

    /// Waits up to `blockingMilliseconds` for events, then reads all that are queued.
    private func readAvailable(_ buffer: inout [UInt8], blockingMilliseconds: Int32) {
        var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard let ready = try? syscallRetrying("poll(destroy events)", { poll(&pfd, 1, blockingMilliseconds) }), ready > 0 else { return }
        var batch: [SocketRecord] = []
        var overflows = 0
        reading: while true {
            let received: Result<Int, SystemCallError> = buffer.withUnsafeMutableBytes { raw in
                Result { () throws(SystemCallError) in
                    try syscallRetrying("recv(destroy events)") { recv(fd, raw.baseAddress, raw.count, Int32(MSG_DONTWAIT)) }
                }
            }
            let n: Int
            switch received {
            case .success(let count): n = count
            case .failure(let error):
                // ENOBUFS: the kernel dropped events (counted, the stream goes on); EAGAIN: all read.
                if error.errno == ENOBUFS {
                    overflows += 1
                    continue reading
                }
                break reading
            }
            if n == 0 { break }
            buffer.withUnsafeBytes { raw in
                // A malformed datagram is skipped: the rest of the stream is still good.
                _ = try? parseInetDiagDatagram(UnsafeRawBufferPointer(rebasing: raw[0..<n]), proto: .tcp, into: &batch)
            }
        }
        if batch.isEmpty && overflows == 0 { return }
        state.withLock { s in
            s.sockets.append(contentsOf: batch)
            s.overflows += overflows
        }
    }
}

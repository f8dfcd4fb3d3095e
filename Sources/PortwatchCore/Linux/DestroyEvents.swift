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
    private let fd: Int32
    private let state = Mutex(State())
    private let threadHandle = Mutex<pthread_t?>(nil)

    private struct State {
        var sockets: [SocketRecord] = []
        var overflows = 0
        var stopping = false
    }

    /// Subscribes to the TCP destroy groups (IPv4 and IPv6). Needs CAP_NET_ADMIN.
    public init(receiveBuffer: Int32 = 32 << 20) throws(PortwatchError) {
        let fd = socket(AF_NETLINK, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), NETLINK_SOCK_DIAG)
        if fd < 0 { throw SystemCallError("socket(NETLINK_SOCK_DIAG)", errno: errno).asPortwatchError(needs: "CAP_NET_ADMIN") }
        // As root, SO_RCVBUFFORCE goes past rmem_max; otherwise the kernel caps SO_RCVBUF.
        var size = receiveBuffer
        if setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, socklen_t(MemoryLayout<Int32>.size)) != 0 {
            _ = setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        }
        var address = sockaddr_nl()
        address.nl_family = sa_family_t(AF_NETLINK)
        // TCP only: a closed TCP socket's event carries its final tcp_info. A UDP socket's
        // carries nothing but its protocol (no drop count), so its groups would only add noise.
        address.nl_groups = [SKNLGRP_INET_TCP_DESTROY, SKNLGRP_INET6_TCP_DESTROY]
            .reduce(UInt32(0)) { $0 | UInt32(1) << ($1.rawValue - 1) }
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_nl>.size))
            }
        }
        if rc != 0 {
            let code = errno
            close(fd)
            if code == EPERM || code == EACCES {
                throw .permission("closed connections' counters need root or CAP_NET_ADMIN (sock_diag destroy events)")
            }
            throw SystemCallError("bind(sock_diag destroy groups)", errno: code).asPortwatchError(needs: "CAP_NET_ADMIN")
        }
        self.fd = fd
    }

    deinit {
        stop()
        close(fd)
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
        if poll(&pfd, 1, blockingMilliseconds) <= 0 { return }
        var batch: [SocketRecord] = []
        var overflows = 0
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if n < 0 {
                let code = errno
                if code == EINTR { continue }
                if code == ENOBUFS {
                    overflows += 1
                    continue
                }
                break
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

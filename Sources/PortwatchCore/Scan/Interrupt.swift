#if canImport(Glibc)
import Glibc
#endif
import CSockDiag

/// Ctrl-C as a readable descriptor: SIGINT is blocked in the calling thread and queued to a
/// signalfd, which a scan waits on with its sockets and stops at (keeping what it found). Call
/// it on the main thread before any other thread starts, so no thread takes the default action.
/// Nil when the kernel refuses a signalfd (the scan then simply cannot be stopped gracefully).
public func interruptDescriptor() -> Int32? {
    var mask = sigset_t()
    sigemptyset(&mask)
    sigaddset(&mask, SIGINT)
    guard pthread_sigmask(SIG_BLOCK, &mask, nil) == 0 else { return nil }
    let fd = signalfd(-1, &mask, Int32(SFD_CLOEXEC) | Int32(SFD_NONBLOCK))
    if fd < 0 {
        pthread_sigmask(SIG_UNBLOCK, &mask, nil)
        return nil
    }
    return fd
}

/// The most descriptors this process may open (RLIMIT_NOFILE's soft limit).
public func openFileLimit() -> Int {
    var limit = rlimit()
    guard getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return 1024 }
    return limit.rlim_cur >= UInt(1 << 20) ? 1 << 20 : Int(limit.rlim_cur)
}

/// Processors online (at least 1).
func onlineCPUs() -> Int { max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))) }

/// A closure on a new POSIX thread; join the returned thread to wait for it.
func startThread(_ body: @escaping @Sendable () -> Void) throws(PortwatchError) -> pthread_t {
    final class Box: @unchecked Sendable {
        // Written once before the thread starts, read once by it: no concurrent access.
        let body: @Sendable () -> Void
        init(_ body: @escaping @Sendable () -> Void) { self.body = body }
    }
    let box = Unmanaged.passRetained(Box(body)).toOpaque()
    var thread = pthread_t()
    let rc = pthread_create(&thread, nil, { raw in
        let box = Unmanaged<AnyObject>.fromOpaque(raw!).takeRetainedValue() as! Box
        box.body()
        return nil
    }, box)
    if rc != 0 {
        Unmanaged<AnyObject>.fromOpaque(box).release()
        throw SystemCallError("pthread_create", errno: rc).asPortwatchError
    }
    return thread
}

#if canImport(Glibc)
import Glibc
#endif
import CSockDiag

/// Work done inside other network namespaces. setns() moves only the calling thread, so the
/// work runs on a thread of its own that joins each namespace in turn and goes back to ours
/// at the end: no other thread of portwatch ever changes namespace. Sockets keep the namespace
/// they were created in, so what is opened there can be used from any thread afterwards.
public enum NamespaceEntry {
    /// Runs `body` once per namespace, inside it, on one dedicated thread (in order); a
    /// namespace that cannot be entered (gone, or no privilege) yields its error instead.
    public static func forEach<T>(_ namespaces: [NetworkNamespace],
                                  _ body: (NetworkNamespace) -> T) -> [Result<T, PortwatchError>] {
        if namespaces.isEmpty { return [] }
        var results: [Result<T, PortwatchError>] = []
        results.reserveCapacity(namespaces.count)
        let ran = onDedicatedThread {
            let home = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC)
            defer {
                if home >= 0 {
                    _ = csd_setns_net(home)
                    close(home)
                }
            }
            for ns in namespaces {
                do throws(PortwatchError) {
                    try enter(ns)
                    results.append(.success(body(ns)))
                } catch {
                    results.append(.failure(error))
                }
            }
        }
        if !ran {
            return namespaces.map { _ in .failure(.system("cannot start a thread to enter network namespaces")) }
        }
        return results
    }

    /// Runs `body` inside one namespace on a dedicated thread and returns what it returns.
    public static func run<T>(in namespace: NetworkNamespace,
                              _ body: () throws(PortwatchError) -> T) throws(PortwatchError) -> T {
        let result = forEach([namespace]) { _ in Result { () throws(PortwatchError) in try body() } }
        return try result[0].get().get()
    }

    /// Moves this thread into `ns`, checking that the file still names the same namespace (a
    /// name deleted and added again is another namespace, with another inode).
    static func enter(_ ns: NetworkNamespace) throws(PortwatchError) {
        let fd = open(ns.path, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            let code = errno
            if code == ENOENT || code == ESRCH { throw .system("network namespace \(ns.label) is gone") }
            throw problem(ns, code: code, call: "open(\(ns.path))")
        }
        defer { close(fd) }
        var st = stat()
        if fstat(fd, &st) == 0 && UInt64(st.st_ino) != ns.inode {
            throw .system("network namespace \(ns.label) is gone (\(ns.path) now names another one)")
        }
        if csd_setns_net(fd) != 0 { throw problem(ns, code: errno, call: "setns") }
    }

    private static func problem(_ ns: NetworkNamespace, code: Int32, call: String) -> PortwatchError {
        if code == EPERM || code == EACCES {
            return .permission("network namespace \(ns.label) could not be entered — needs root or CAP_SYS_ADMIN")
        }
        return .system("network namespace \(ns.label): \(SystemCallError(call, errno: code).description)")
    }
}

/// The work handed to a dedicated thread.
// @unchecked Sendable: the creating thread blocks in pthread_join until the thread that runs
// `body` has ended, so the closure and what it captures are never used by two threads at once.
private final class ThreadWork: @unchecked Sendable {
    let body: () -> Void
    init(_ body: @escaping () -> Void) { self.body = body }
}

/// Runs `body` on a new thread and waits for it; false when no thread could be started.
private func onDedicatedThread(_ body: () -> Void) -> Bool {
    withoutActuallyEscaping(body) { escaping in
        let box = Unmanaged.passRetained(ThreadWork(escaping)).toOpaque()
        var tid = pthread_t()
        let rc = pthread_create(&tid, nil, { arg in
            guard let arg else { return nil }
            Unmanaged<ThreadWork>.fromOpaque(arg).takeRetainedValue().body()
            return nil
        }, box)
        if rc != 0 {
            Unmanaged<ThreadWork>.fromOpaque(box).release()
            return false
        }
        pthread_join(tid, nil)
        return true
    }
}

#if canImport(Glibc)
import Glibc
#endif

/// Sends a signal to a process.
public func sendSignal(_ signal: Int32, to pid: Int32) throws(SystemCallError) {
    try syscallRetrying("kill") { kill(pid, signal) }
}

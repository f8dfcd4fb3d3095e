#if canImport(Glibc)
import Glibc
#endif

/// `TERM`, `SIGTERM`, `term` or `15` → (15, "TERM").
public func parseSignal(_ text: String) throws(PortwatchError) -> (Int32, String) {
    let names: [(String, Int32)] = [("HUP", SIGHUP), ("INT", SIGINT), ("QUIT", SIGQUIT), ("KILL", SIGKILL),
                                    ("USR1", SIGUSR1), ("USR2", SIGUSR2), ("TERM", SIGTERM), ("STOP", SIGSTOP),
                                    ("CONT", SIGCONT)]
    var upper = text.uppercased()
    if upper.hasPrefix("SIG") { upper.removeFirst(3) }
    if let match = names.first(where: { $0.0 == upper }) { return (match.1, match.0) }
    if let n = Int32(text), n > 0, n < 65 {
        return (n, names.first(where: { $0.1 == n })?.0 ?? String(n))
    }
    throw .usage("invalid --signal '\(text)': use TERM, KILL, HUP, INT, QUIT, USR1, USR2 or a number 1-64")
}

/// Sends a signal to a process.
public func sendSignal(_ signal: Int32, to pid: Int32) throws(SystemCallError) {
    try syscallRetrying("kill") { kill(pid, signal) }
}

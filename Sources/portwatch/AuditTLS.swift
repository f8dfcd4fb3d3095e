import Foundation
import PortwatchCore
import PortwatchProbe

/// TLS handshakes with the audit's targets, all at once, each bounded by `timeout` seconds;
/// only listeners that completed a handshake are in the answer. Verification failures still
/// give a report (insecure mode): the audit judges them, it does not stop at them.
func readTLSReports(_ targets: [TLSAuditTarget], timeout: Double) -> [PortKey: TLSReport] {
    guard !targets.isEmpty else { return [:] }
    var options = ProbeOptions()
    options.tls = true
    options.insecure = true
    options.timeout = timeout
    options.alpn = []
    let chosen = options
    let prober = NetworkProber()
    return runBlocking {
        await withTaskGroup(of: (PortKey, TLSReport?).self) { group in
            for t in targets {
                group.addTask {
                    let target = ProbeTarget(text: "\(t.host):\(t.key.port)", host: t.host, port: t.key.port)
                    return (t.key, await prober.probe(target, options: chosen).tls)
                }
            }
            var out: [PortKey: TLSReport] = [:]
            for await (key, report) in group { if let report { out[key] = report } }
            return out
        }
    }
}

/// Work started on another thread now, its value collected later with `wait()`.
func inBackground<T: Sendable>(_ work: @escaping @Sendable () -> T) -> Pending<T> {
    let pending = Pending<T>()
    Thread.detachNewThread {
        pending.value = work()
        pending.done.signal()
    }
    return pending
}

/// A value being computed on another thread. `@unchecked Sendable`: `value` is written once
/// before `done` is signalled and read only after `wait()` has seen that signal.
final class Pending<T>: @unchecked Sendable {
    fileprivate var value: T?
    fileprivate let done = DispatchSemaphore(value: 0)

    func wait() -> T {
        done.wait()
        return value!
    }
}

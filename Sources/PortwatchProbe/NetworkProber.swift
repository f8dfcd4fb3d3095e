import Foundation
import PortwatchCore
import Synchronization

/// The real prober: connects over the network from this host. `portwatch probe` and the
/// daemon's `probes:` use it.
///
/// Per target: the host is resolved once; each of `count` rounds connects to every address at
/// once (`checkRemote`: open if any accepts, else the strongest answer) and records the connect
/// time of the address that answered — as nping does, from the return of `connect()` (the SYN
/// sent) to the kernel's answer; the first round's per-address answers are reported.
/// Then, when the port is open and TLS or send/expect was asked, one session on the address
/// that answered does the TLS handshake, the certificate checks and the exchange.
public struct NetworkProber: Prober {
    /// A prober with no state of its own; safe to share between tasks.
    public init() {}

    /// Probes one target; never throws: every failure is in the result's `state` and `problems`.
    public func probe(_ target: ProbeTarget, options: ProbeOptions) async -> ProbeResult {
        let started = Date()
        let count = max(1, options.count)
        let addresses: [RemoteAddress]
        do {
            let host = target.host
            let timeout = options.timeout
            addresses = try await offPool { () throws(PortwatchError) in try resolveHost(host, timeout: timeout) }
        } catch {
            let problem = (error as? PortwatchError)?.message ?? "probe cancelled"
            var result = ProbeResult(target: target, address: nil, attempts: [], state: .unreachable, healthy: false,
                                     latency: nil, loss: 1, tls: nil, expect: nil, problems: [problem], time: started)
            result.count = count
            return result
        }

        var latency = LatencyRecorder()
        var firstAttempts: [ConnectResult] = []
        var answered = 0
        var state = RemoteState.unreachable
        var decisive: RemoteAddress?
        var localError: String?
        var cancelled: Bool
        let payload = target.proto == .udp ? (options.send ?? []) : []
        // All rounds run on one thread of their own, sleeping `interval` between them there: no
        // thread is started and no task hops between two connects, so each connect's timing sees
        // only the network (as nping's single loop does). A cancelled caller stops it at the next
        // round or within a slice of the interval.
        let stop = StopFlag()
        let rounds: RoundsOutcome
        do {
            rounds = try await withTaskCancellationHandler {
                try await offPool { () throws(PortwatchError) in
                    runRounds(count: count, interval: options.interval, stop: stop) { () throws(PortwatchError) in
                        try checkRemote(host: target.host, addresses: addresses, proto: target.proto, port: target.port,
                                        timeout: options.timeout, payload: payload)
                    }
                }
            } onCancel: {
                stop.set()
            }
        } catch {
            rounds = RoundsOutcome(checks: [], localError: nil, cancelled: true)
        }
        if let error = rounds.localError {
            // A local failure (no descriptors, no memory): not an answer from the target.
            localError = error.message
        }
        cancelled = rounds.cancelled
        for (round, check) in rounds.checks.enumerated() {
            if round == 0 { firstAttempts = check.attempts }
            if check.state == .open {
                answered += 1
                latency.record(seconds: check.decisive.afterSend)
                decisive = check.decisive.address
                state = .open
            } else if state != .open, round == 0 || check.state.rawStrength > state.rawStrength {
                state = check.state
                decisive = decisive ?? check.decisive.address
            }
        }
        if cancelled {
            // The caller is gone (the daemon is stopping): say so rather than report a guess.
            var result = ProbeResult(target: target, address: decisive?.description ?? addresses.first?.description,
                                     attempts: firstAttempts, state: state, healthy: false, latency: latency.summary,
                                     loss: 1, tls: nil, expect: nil, problems: ["probe cancelled"], time: started)
            result.count = count
            return result
        }

        var tls: TLSReport?
        var expect: ExpectReport?
        var problems: [String] = []
        if let localError { problems.append("probe failed here: \(localError)") }
        if state == .open, target.proto == .tcp, let address = decisive,
           options.tls || options.send != nil || options.expect != nil {
            let session = await runSession(address: address, target: target, options: options)
            tls = session.tls
            expect = session.expect
            if let failure = session.failure { problems.append(failure) }
        }
        problems = probeProblems(state: state, tls: tls, expect: expect, options: options) + problems
        var result = ProbeResult(target: target, address: decisive?.description ?? addresses.first?.description,
                                 attempts: firstAttempts, state: state, healthy: problems.isEmpty,
                                 latency: latency.summary, loss: Double(count - answered) / Double(count),
                                 tls: tls, expect: expect, problems: problems, time: started)
        result.count = count
        return result
    }
}

extension RemoteState {
    /// The same order as `checkRemote` uses to combine addresses (open beats everything).
    var rawStrength: Int {
        switch self {
        case .open: return 4
        case .openFiltered: return 3
        case .closed: return 2
        case .filtered: return 1
        case .unreachable: return 0
        }
    }
}

/// What the rounds of one probe found, in order, and why they stopped early if they did.
struct RoundsOutcome: Sendable {
    var checks: [RemoteCheck]
    var localError: PortwatchError?
    var cancelled: Bool
}

/// Set once by a cancelled caller; read by the thread running the rounds.
final class StopFlag: Sendable {
    private let flag = Atomic<Bool>(false)
    func set() { flag.store(true, ordering: .relaxed) }
    var isSet: Bool { flag.load(ordering: .relaxed) }
}

/// Runs `count` rounds of `check` on the calling (blocking) thread, `interval` seconds apart,
/// stopping at a local error or when `stop` is set (checked between rounds and every 50 ms of
/// the interval).
func runRounds(count: Int, interval: Double, stop: StopFlag,
               _ check: () throws(PortwatchError) -> RemoteCheck) -> RoundsOutcome {
    var outcome = RoundsOutcome(checks: [], localError: nil, cancelled: false)
    outcome.checks.reserveCapacity(count)
    for round in 0..<count {
        if round > 0 && interval > 0 {
            var left = interval
            while left > 0 && !stop.isSet {
                let slice = min(left, 0.05)
                var request = timespec(tv_sec: Int(slice), tv_nsec: Int((slice - slice.rounded(.down)) * 1e9))
                var rest = timespec()
                while nanosleep(&request, &rest) != 0 && errno == EINTR { request = rest }
                left -= slice
            }
        }
        if stop.isSet {
            outcome.cancelled = true
            break
        }
        do throws(PortwatchError) {
            outcome.checks.append(try check())
        } catch {
            outcome.localError = error
            break
        }
    }
    return outcome
}

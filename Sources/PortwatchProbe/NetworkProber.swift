import Foundation
import PortwatchCore

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
        var cancelled = false
        let payload = target.proto == .udp ? (options.send ?? []) : []
        for round in 0..<count {
            if round > 0 && options.interval > 0 {
                try? await Task.sleep(nanoseconds: UInt64(options.interval * 1e9))
            }
            if Task.isCancelled {
                cancelled = true
                break
            }
            do {
                let check = try await offPool { () throws(PortwatchError) in
                    try checkRemote(host: target.host, addresses: addresses, proto: target.proto, port: target.port,
                                    timeout: options.timeout, payload: payload)
                }
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
            } catch let error as PortwatchError {
                // A local failure (no descriptors, no memory): not an answer from the target.
                localError = error.message
                break
            } catch {
                cancelled = true
                break
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

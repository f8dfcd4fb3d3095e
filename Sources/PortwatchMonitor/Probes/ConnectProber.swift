import Foundation
import PortwatchCore

/// The daemon's own prober: TCP connects (or UDP datagrams) with core's `checkRemote`, latency
/// statistics over `count` attempts, and `send`/`expect` over a connection of its own. It does
/// not speak TLS: a TLS target is reported unhealthy with the problem "TLS needs the full
/// prober". The full `NetworkProber` (PortwatchProbe) replaces it where it is linked in.
public struct ConnectProber: Prober {
    public init() {}

    public func probe(_ target: ProbeTarget, options: ProbeOptions) async -> ProbeResult {
        let started = Date()
        if let result = await OffPool.run({ Self.probeBlocking(target, options: options, started: started) }) {
            return result
        }
        return ProbeResult(target: target, address: nil, attempts: [], state: .unreachable, healthy: false,
                           latency: nil, loss: 1, tls: nil, expect: nil, problems: ["probe cancelled"], time: started)
    }

    /// The whole probe, blocking: resolve, `count` attempts `options.interval` apart, then send/expect.
    static func probeBlocking(_ target: ProbeTarget, options: ProbeOptions, started: Date) -> ProbeResult {
        var problems: [String] = []
        let addresses: [RemoteAddress]
        do {
            addresses = try resolveHost(target.host, timeout: options.timeout)
        } catch {
            return ProbeResult(target: target, address: nil, attempts: [], state: .unreachable, healthy: false,
                               latency: nil, loss: 1, tls: nil, expect: nil, problems: [error.message], time: started)
        }
        let count = max(1, options.count)
        var latencies: [Double] = []
        var answered = 0
        var last: RemoteCheck?
        var best: RemoteCheck?
        for attempt in 0..<count {
            if attempt > 0 && options.interval > 0 { usleep(useconds_t(min(options.interval, 60) * 1e6)) }
            do {
                let check = try checkRemote(host: target.host, addresses: addresses, proto: target.proto,
                                            port: target.port, timeout: options.timeout,
                                            payload: target.proto == .udp ? options.send ?? [] : [])
                last = check
                if check.state == .open {
                    latencies.append(check.decisive.seconds * 1000)
                    if best?.state != .open { best = check }
                }
                if check.state == .open || (target.proto == .udp && check.state == .openFiltered) { answered += 1 }
            } catch {
                problems.append(error.message)
                break
            }
        }
        let decisive = best ?? last
        let state = decisive?.state ?? .unreachable
        let usable = state == .open || (target.proto == .udp && state == .openFiltered)
        if let decisive, !usable {
            let reason = decisive.decisive.reason.map { " (\($0))" } ?? ""
            problems.append("\(state.rawValue)\(reason)")
        }
        var expect: ExpectReport?
        if state == .open, target.proto == .tcp, options.send != nil || options.expect != nil, let decisive {
            let exchange = Exchange.run(decisive.decisive.address, port: target.port, send: options.send,
                                        expect: options.expect, timeout: options.timeout)
            expect = exchange.report
            if let problem = exchange.problem { problems.append(problem) }
        }
        if options.tls { problems.append("TLS needs the full prober (portwatch probe); this daemon only connects") }
        return ProbeResult(target: target, address: decisive.map { $0.decisive.address.description },
                           attempts: last?.attempts ?? [], state: state, healthy: usable && problems.isEmpty,
                           latency: LatencyStatistics.summary(latencies),
                           loss: Double(count - answered) / Double(count), tls: nil, expect: expect,
                           problems: problems, time: started)
    }
}

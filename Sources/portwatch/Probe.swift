import ArgumentParser
import Dispatch
import Foundation
import PortwatchCore
import PortwatchProbe

/// `portwatch probe`: active checks of remote ports — state, connect latency, TLS, send/expect.
struct Probe: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Probe host:port targets: state, connect latency, TLS certificate and expiry, send/expect.",
        discussion: """
            Every address a name resolves to is tried; the target is open when any accepts. \
            Latency is over --count connects (min, median, p95, p99, max, stddev; loss). \
            Exit 0 when every target is healthy, 1 when any is closed, filtered, unreachable, \
            fails --expect, fails certificate verification (unless --insecure), or has a certificate \
            expiring within --warn-days; 2 for bad input. With --format nagios: one plugin status line \
            with perfdata, exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
            """)

    @Argument(help: "Targets: host:port, [v6]:port, host:service (e.g. example.com:443 [fd00::2]:22 db:postgresql).")
    var targets: [String] = []

    @Option(name: .long, help: "Connects per target; latency statistics are over these (default 1).")
    var count: Int = 1

    @Option(name: .long, help: "Time between connects (default 1s).", transform: { try parseSeconds($0) })
    var interval: Double = 1

    @Option(name: .long, help: "Time each connect, handshake and exchange may take (default 5s).",
            transform: { try parsePositiveSeconds($0) })
    var timeout: Double = 5

    @Flag(name: .long, help: "Do a TLS handshake: version, ALPN, certificate, expiry, verification.")
    var tls = false

    @Option(name: .long, help: "Server name for SNI and verification (default: the host).")
    var sni: String?

    @Option(name: .customLong("ca"), help: "PEM file of trusted roots instead of the system's.")
    var caFile: String?

    @Flag(name: .long, help: "An unverified certificate does not make the target unhealthy (the reason is still shown).")
    var insecure = false

    @Option(name: .long, help: "Text to send once connected (escapes: \\r \\n \\t \\0 \\\\ \\xHH).")
    var send: String?

    @Option(name: .long, help: "A regular expression the reply must match.")
    var expect: String?

    @Flag(name: .long, help: "Probe UDP: a reply means open, an ICMP port-unreachable closed, silence open|filtered.")
    var udp = false

    @Option(name: .long, help: "A certificate expiring within this many days is unhealthy (default 14; nagios WARNING).")
    var warnDays: Int = 14

    @Option(name: .long, help: "With --format nagios, CRITICAL within this many days (default 7, at most --warn-days).")
    var criticalDays: Int?

    @Option(name: .long, help: "text (default) or nagios (monitoring-plugins status line and exit code).")
    var format: ReportFormat = .text

    @OptionGroup var output: OutputOptions

    func run() throws {
        let options = try probeOptions()
        let probeTargets = try parsedTargets()
        for target in probeTargets { try validateProbe(target, options: options) }
        let prober = NetworkProber()
        let results = runBlocking {
            await withTaskGroup(of: (Int, ProbeResult).self) { group in
                for (i, target) in probeTargets.enumerated() {
                    group.addTask { (i, await prober.probe(target, options: options)) }
                }
                var out: [ProbeResult?] = Array(repeating: nil, count: probeTargets.count)
                for await (i, r) in group { out[i] = r }
                return out.compactMap { $0 }
            }
        }
        switch (format, output.json) {
        case (.nagios, _):
            try renderNagios(results, options: options)
            return
        case (.text, true):
            output.print { w in w.probes(results) }
        case (.text, false):
            emit(results.map { renderText($0, options: options) }.joined(separator: "\n"))
        }
        if !results.allSatisfy(\.healthy) { throw AnswerNo() }
    }

    /// The flags as core options, every combination checked.
    private func probeOptions() throws -> ProbeOptions {
        if targets.isEmpty { throw PortwatchError.usage("missing targets: give HOST:PORT (e.g. probe example.com:443)") }
        if targets.count > 4096 { throw PortwatchError.usage("too many targets (\(targets.count)); at most 4096") }
        if !(1...100_000).contains(count) { throw PortwatchError.usage("invalid --count '\(count)': must be between 1 and 100000") }
        if interval > 3600 { throw PortwatchError.usage("invalid --interval: at most 1h") }
        if timeout > 3600 { throw PortwatchError.usage("invalid --timeout: at most 1h") }
        if !(0...36_500).contains(warnDays) { throw PortwatchError.usage("invalid --warn-days '\(warnDays)': must be between 0 and 36500") }
        let criticalDays = self.criticalDays ?? min(7, warnDays)
        if !(0...36_500).contains(criticalDays) { throw PortwatchError.usage("invalid --critical-days '\(criticalDays)': must be between 0 and 36500") }
        if criticalDays > warnDays { throw PortwatchError.usage("--critical-days (\(criticalDays)) must not exceed --warn-days (\(warnDays))") }
        if format == .nagios && output.json { throw PortwatchError.usage("--format nagios and --json exclude each other: choose one") }
        if udp && tls { throw PortwatchError.usage("--tls needs TCP: it does not combine with --udp") }
        if udp && expect != nil { throw PortwatchError.usage("--expect reads a TCP reply: it does not combine with --udp") }
        if !tls {
            if sni != nil { throw PortwatchError.usage("--sni names the server in a TLS handshake: add --tls") }
            if caFile != nil { throw PortwatchError.usage("--ca sets the roots for TLS verification: add --tls") }
            if insecure { throw PortwatchError.usage("--insecure relaxes TLS verification: add --tls") }
        }
        var options = ProbeOptions()
        options.count = count
        options.interval = interval
        options.timeout = timeout
        options.tls = tls
        if let sni {
            options.sni = try HostPort.parseHost(sni)
        }
        options.caFile = caFile
        options.insecure = insecure
        if let send { options.send = try decodeSendText(send) }
        options.expect = expect
        options.warnDays = warnDays
        options.criticalDays = criticalDays
        return options
    }

    private func parsedTargets() throws -> [ProbeTarget] {
        let proto: TransportProtocol = udp ? .udp : .tcp
        return try targets.map { text in
            let (host, port) = try HostPort.parseTarget(text, proto: proto)
            return ProbeTarget(text: text, host: host, port: port, proto: proto)
        }
    }

    // MARK: - Rendering

    private func renderText(_ r: ProbeResult, options: ProbeOptions) -> String {
        let term = Terminal.stdout
        var lines: [String] = []
        let state = r.state == .open ? term.green(r.state.rawValue) : term.red(r.state.rawValue)
        var head = "\(r.target.proto.rawValue) \(r.target.text)"
        if let address = r.address, address != r.target.host { head += " (\(address))" }
        head += ": \(state)"
        head += r.healthy ? " — healthy" : " — " + term.red("unhealthy")
        lines.append(head)
        if let l = r.latency {
            var line = "  latency ms  min \(ms(l.min))  median \(ms(l.median))  p95 \(ms(l.p95))  p99 \(ms(l.p99))  max \(ms(l.max))  stddev \(ms(l.stddev))"
            line += "  loss \(percent(r.loss)) of \(r.count)"
            lines.append(line)
        } else if r.count > 1 {
            lines.append("  loss \(percent(r.loss)) of \(r.count)")
        }
        if r.attempts.count > 1 || (r.attempts.first.map { $0.state != .open } ?? false) {
            let parts = r.attempts.map { a -> String in
                var s = "\(a.address) \(a.state.rawValue)"
                if a.state == .open { s += " \(ms(a.seconds * 1000)) ms" }
                if let reason = a.reason, a.state != .open { s += " (\(reason))" }
                return s
            }
            lines.append("  addresses   " + parts.joined(separator: "; "))
        }
        if let t = r.tls {
            var line = "  tls         \(t.version)"
            if !t.cipher.isEmpty { line += " \(t.cipher)" }
            line += ", ALPN \(t.alpn ?? "none"), handshake \(ms(t.handshakeMs)) ms"
            lines.append(line)
            lines.append("  certificate \(t.subject), issuer \(t.issuer)")
            if !t.sans.isEmpty { lines.append("  names       " + t.sans.joined(separator: ", ")) }
            let days = t.daysLeft < 0 ? "expired \(-t.daysLeft) days ago" : "\(t.daysLeft) days left"
            let expiry = "  expires     \(dateText(t.notAfter)) (\(days))"
            lines.append(t.daysLeft < options.warnDays ? term.yellow(expiry) : expiry)
            lines.append(t.verified ? "  verified    yes" : "  verified    " + term.red("no: \(t.verifyError ?? "unknown reason")")
                         + (options.insecure ? " (accepted: --insecure)" : ""))
        }
        if let e = r.expect {
            lines.append("  expect      \(e.matched ? "matched" : term.red("not matched")): \(e.received.isEmpty ? "(nothing received)" : e.received)")
        }
        for problem in r.problems { lines.append("  problem     " + problem) }
        return lines.joined(separator: "\n")
    }

    private func renderNagios(_ results: [ProbeResult], options: ProbeOptions) throws {
        let status = results.map { $0.pluginStatus(options: options) }.max() ?? .unknown
        let several = results.count > 1
        var summaries: [String] = []
        var perf: [String] = []
        for r in results {
            let label = several ? r.target.text : nil
            var s = "\(r.target.text)"
            if r.state == .open, let l = r.latency {
                s += " open in \(ms(l.median)) ms"
                if r.count > 1 { s += " (median of \(r.count), loss \(percent(r.loss)))" }
            } else {
                s += " \(r.state.rawValue)"
            }
            if let t = r.tls {
                s += ", \(t.version), certificate \(t.daysLeft < 0 ? "expired" : "expires in \(t.daysLeft) days")"
                if !t.verified { s += ", not verified: \(t.verifyError ?? "unknown reason")" }
            }
            if let e = r.expect { s += e.matched ? ", reply matched" : ", reply did not match" }
            let shown = r.problems.filter { !$0.hasPrefix("certificate") && !$0.hasPrefix("reply") && !$0.hasPrefix("expected") }
            if r.state == .open && !shown.isEmpty { s += " (" + shown.joined(separator: "; ") + ")" }
            if r.address == nil, let why = r.problems.first { s += " (\(why))" }
            summaries.append(s)
            if let l = r.latency {
                perf.append("\(perfLabel("time", target: label))=\(perfSeconds(l.median / 1000));;;0")
            }
            if r.count > 1 {
                perf.append("\(perfLabel("loss", target: label))=\(Int((r.loss * 100).rounded()))%;;;0;100")
            }
            if let t = r.tls {
                perf.append("\(perfLabel("days_left", target: label))=\(t.daysLeft);\(options.warnDays);\(options.criticalDays)")
            }
        }
        try finishNagios(status, nagiosLine(status, summaries.joined(separator: "; "), perfdata: perf))
    }
}

/// Milliseconds with three decimals.
private func ms(_ value: Double) -> String { String(format: "%.3f", value) }

private func percent(_ fraction: Double) -> String {
    let p = fraction * 100
    return p == p.rounded() ? "\(Int(p))%" : String(format: "%.1f%%", p)
}

private func dateText(_ date: Date) -> String {
    let f = DateFormatter()
    f.locale = Locale(identifier: "en_US_POSIX")
    f.timeZone = TimeZone(identifier: "UTC")
    f.dateFormat = "yyyy-MM-dd HH:mm:ss 'UTC'"
    return f.string(from: date)
}

/// Runs async work from the synchronous command: the main thread waits on a semaphore while
/// the work runs on Swift's cooperative pool.
func runBlocking<T: Sendable>(_ body: @escaping @Sendable () async -> T) -> T {
    let box = BlockingResult<T>()
    let done = DispatchSemaphore(value: 0)
    Task {
        box.set(await body())
        done.signal()
    }
    done.wait()
    return box.get()
}

/// The result handed from the task to the waiting thread. `@unchecked Sendable`: the lock
/// guards the value, and the semaphore orders the one write before the one read.
private final class BlockingResult<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: T?
    func set(_ v: T) { lock.lock(); value = v; lock.unlock() }
    func get() -> T { lock.lock(); defer { lock.unlock() }; return value! }
}

// `portwatch probe` and `--format nagios` against a namespace test host (NetnsLab): real TCP,
// UDP and TLS servers (python3 and `openssl s_server`), nft rules that reset and drop,
// routes that refuse, and certificates made by the test with openssl.

import Foundation
import Testing
import PortwatchTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// Ports inside the server namespace (nothing else lives there).
private enum ProbePort {
    static let open: UInt16 = 20080
    static let reset: UInt16 = 20081
    static let dropped: UInt16 = 20082
    static let banner: UInt16 = 20025
    static let udpEcho: UInt16 = 20053
    static let udpSilent: UInt16 = 20054
    static let tlsSelfSigned: UInt16 = 20443
    static let tlsTenDays: UInt16 = 20444
    static let tlsWrongName: UInt16 = 20445
}

/// A TCP server that greets with a banner line and answers each line it reads in upper case.
private let bannerScript = #"""
import os, select, socket, sys
fam = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
s = socket.socket(fam, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
if fam == socket.AF_INET6:
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(16)
print("ready", flush=True)
conns = {}
while True:
    ready, _, _ = select.select([sys.stdin, s] + list(conns.values()), [], [], 30)
    for r in ready:
        if r is sys.stdin:
            if not os.read(sys.stdin.fileno(), 4096):
                sys.exit(0)
        elif r is s:
            c, _ = s.accept()
            c.sendall(b"220 portwatch-test ready\r\n")
            conns[c.fileno()] = c
        else:
            data = b""
            try:
                data = r.recv(4096)
            except OSError:
                pass
            if data:
                try:
                    r.sendall(data.upper())
                except OSError:
                    pass
            else:
                conns.pop(r.fileno(), None)
                r.close()
"""#

/// A namespace test host for probes: a lab with TCP, banner, UDP and three TLS servers.
private final class ProbeLab: @unchecked Sendable {
    let lab: NetnsLab
    let certs: String
    private var children: [Child] = []

    init() throws {
        lab = try NetnsLab()
        certs = "/tmp/pw-probe-\(getpid())-\(lab.n)"
        do {
            try FileManager.default.createDirectory(atPath: certs, withIntermediateDirectories: true)
            _ = try lab.startServer(["tcp::::\(ProbePort.open)",
                                     "udp-echo:0.0.0.0:\(ProbePort.udpEcho)", "udp-silent:0.0.0.0:\(ProbePort.udpSilent)"],
                                    in: lab.server)
            try startBanner()
            // Three certificates: self-signed for probe.test (90 days), one for probe.test
            // that expires in 10 days, one for another name.
            try makeCertificate("good", name: "probe.test", days: 90)
            try makeCertificate("soon", name: "probe.test", days: 10)
            try makeCertificate("wrong", name: "other.test", days: 90)
            try startTLS("good", port: ProbePort.tlsSelfSigned)
            try startTLS("soon", port: ProbePort.tlsTenDays)
            try startTLS("wrong", port: ProbePort.tlsWrongName)
            try lab.clientEtc(["hosts": """
                127.0.0.1 localhost
                \(lab.serverV4) probe.test
                \(lab.serverV4) twohomes
                \(lab.serverV6) twohomes
                """])
        } catch {
            destroy()
            throw error
        }
    }

    func destroy() {
        for c in children { c.kill() }
        children = []
        lab.removeClientEtc()
        lab.destroy()
        try? FileManager.default.removeItem(atPath: certs)
    }

    func pem(_ name: String) -> String { "\(certs)/\(name).pem" }

    private func makeCertificate(_ file: String, name: String, days: Int) throws {
        let r = runTool(TestEnv.which("openssl") ?? "openssl",
                        ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                         "-keyout", "\(certs)/\(file).key", "-out", pem(file), "-days", "\(days)",
                         "-subj", "/CN=\(name)", "-addext", "subjectAltName=DNS:\(name)"])
        if r.status != 0 { throw SupportError("openssl req for \(file): \(r.stderr)") }
    }

    /// `openssl s_server` in the server namespace, reversing each line it reads; ready once it
    /// prints ACCEPT.
    private func startTLS(_ file: String, port: UInt16) throws {
        guard let ip = TestEnv.ip, let openssl = TestEnv.which("openssl") else { throw SupportError("ip or openssl missing") }
        let child = try Child.spawn(ip, ["netns", "exec", lab.server, openssl, "s_server", "-accept", "\(port)",
                                         "-cert", pem(file), "-key", "\(certs)/\(file).key", "-alpn", "http/1.1",
                                         "-rev", "-naccept", "200"], stdin: .pipe)
        children.append(child)
        for _ in 0..<20 {
            guard let line = child.readLine(timeout: 10) else { break }
            if line.contains("ACCEPT") { return }
        }
        throw SupportError("openssl s_server on \(port) did not start: \(child.drainStderr())")
    }

    private func startBanner() throws {
        guard let ip = TestEnv.ip, let python = TestEnv.python3 else { throw SupportError("ip or python3 missing") }
        let child = try Child.spawn(ip, ["netns", "exec", lab.server, python, "-u", "-c", bannerScript, "::",
                                         "\(ProbePort.banner)"], stdin: .pipe)
        children.append(child)
        guard child.readLine(timeout: 10) == "ready" else {
            throw SupportError("banner server did not start: \(child.drainStderr())")
        }
    }

    /// `portwatch probe ARGS` from the client namespace.
    func probe(_ args: [String], timeout: Double = 30) -> PortwatchResult {
        runPortwatch(["probe"] + args, timeout: timeout, netns: lab.client)
    }
}

private func withProbeLab(_ body: (ProbeLab, NetnsLab) throws -> Void) throws {
    let p = try ProbeLab()
    defer { p.destroy() }
    try body(p, p.lab)
}

/// The first entry of a `probe --json` document.
private func firstProbe(_ r: PortwatchResult) -> [String: Any]? {
    r.json()?.objects("probes").first
}

@Suite("namespace: probe (state, latency, TLS, send/expect, nagios)", .blocking,
       .enabled(if: TestEnv.canCreateNamespaces && TestEnv.which("openssl") != nil,
                "needs root with CAP_NET_ADMIN, ip, nft, python3 and openssl"))
struct ProbeNamespaceTests {
    /// open / closed (nft reject with tcp reset) / filtered (nft drop) / unreachable (prohibit
    /// route); every target in one run, in order; exit 1 because some are unhealthy.
    @Test func statesOfEveryKind() throws {
        try withProbeLab { p, lab in
            try lab.nft(lab.server, """
                table inet pwprobe {
                  chain input {
                    type filter hook input priority 0;
                    tcp dport \(ProbePort.reset) reject with tcp reset
                    tcp dport \(ProbePort.dropped) drop
                  }
                }
                """)
            lab.ip(["-n", lab.client, "route", "add", "prohibit", "10.251.\(lab.n).0/24"])
            let targets = ["\(lab.serverV4):\(ProbePort.open)", "\(lab.serverV4):\(ProbePort.reset)",
                           "\(lab.serverV4):\(ProbePort.dropped)", "10.251.\(lab.n).2:80"]
            let r = p.probe(targets + ["--timeout", "700ms", "--json"])
            #expect(r.status == 1, "\(r)")
            let probes = r.json()?.objects("probes") ?? []
            #expect(probes.map { $0.string("target") ?? "" } == targets, "\(r)")
            #expect(probes.map { $0.string("state") ?? "" } == ["open", "closed", "filtered", "unreachable"], "\(r)")
            #expect(probes.map { $0.bool("healthy") ?? true } == [true, false, false, false], "\(r)")
            #expect(probes[safe: 3]?.objects("attempts").first?.string("reason")?.contains("prohibited") == true, "\(r)")
            let open = p.probe(["\(lab.serverV4):\(ProbePort.open)"])
            #expect(open.status == 0 && open.stdout.contains("open — healthy"), "\(open)")
        }
    }

    /// --count N: N connects, latency statistics ordered and loss 0; the PRODUCT.md JSON shape.
    @Test func latencyOverCountAndJSONShape() throws {
        try withProbeLab { p, lab in
            let r = p.probe(["\(lab.serverV4):\(ProbePort.open)", "--count", "20", "--interval", "5ms", "--json"])
            #expect(r.status == 0, "\(r)")
            let probe = try #require(firstProbe(r), "\(r)")
            for key in ["target", "host", "port", "address", "state", "healthy", "latency_ms", "loss", "tls", "expect"] {
                #expect(probe.keys.contains(key), "missing \(key): \(r)")
            }
            #expect(probe["tls"] is NSNull && probe["expect"] is NSNull, "\(r)")
            #expect(probe.int("port") == Int(ProbePort.open))
            #expect(probe.string("host") == lab.serverV4 && probe.string("address") == lab.serverV4)
            #expect(probe.int("count") == 20)
            #expect((probe["loss"] as? NSNumber)?.doubleValue == 0)
            let l = try #require(probe.object("latency_ms"))
            let values = ["min", "median", "p95", "p99", "max"].compactMap { (l[$0] as? NSNumber)?.doubleValue }
            #expect(values.count == 5 && values == values.sorted() && values[0] > 0, "\(l)")
            #expect(((l["stddev"] as? NSNumber)?.doubleValue ?? -1) >= 0)
        }
    }

    /// `[v6]:port`, and a name with an IPv4 and an IPv6 address: both tried and reported.
    @Test func ipv6AndEveryAddress() throws {
        try withProbeLab { p, lab in
            let v6 = p.probe(["[\(lab.serverV6)]:\(ProbePort.open)", "--json"])
            #expect(v6.status == 0, "\(v6)")
            #expect(firstProbe(v6)?.string("address") == lab.serverV6, "\(v6)")
            #expect(firstProbe(v6)?.string("host") == lab.serverV6, "\(v6)")
            let both = p.probe(["twohomes:\(ProbePort.open)", "--json"])
            #expect(both.status == 0, "\(both)")
            let attempts = firstProbe(both)?.objects("attempts") ?? []
            #expect(Set(attempts.compactMap { $0.string("address") }) == [lab.serverV4, lab.serverV6], "\(both)")
            // A service name as the port.
            let service = p.probe(["probe.test:http", "--timeout", "500ms", "--json"])
            #expect(firstProbe(service)?.int("port") == 80, "\(service)")
            #expect(firstProbe(service)?.string("state") == "closed", "\(service)")
        }
    }

    /// --send with escapes and --expect: matched, not matched (exit 1), and a banner alone.
    @Test func sendAndExpect() throws {
        try withProbeLab { p, lab in
            let target = "\(lab.serverV4):\(ProbePort.banner)"
            let banner = p.probe([target, "--expect", "^220 ", "--json"])
            #expect(banner.status == 0, "\(banner)")
            #expect(firstProbe(banner)?.object("expect")?.string("received") == "220 portwatch-test ready", "\(banner)")
            let echoed = p.probe([target, "--send", "quit\\r\\n", "--expect", "QUIT", "--json"])
            #expect(echoed.status == 0, "\(echoed)")
            #expect(firstProbe(echoed)?.object("expect")?.bool("matched") == true, "\(echoed)")
            let missed = p.probe([target, "--send", "hello\\n", "--expect", "^SSH-", "--timeout", "1s", "--json"])
            #expect(missed.status == 1, "\(missed)")
            #expect(firstProbe(missed)?.object("expect")?.bool("matched") == false, "\(missed)")
            #expect(firstProbe(missed)?.bool("healthy") == false, "\(missed)")
            let v6 = p.probe(["[\(lab.serverV6)]:\(ProbePort.banner)", "--expect", "ready"])
            #expect(v6.status == 0 && v6.stdout.contains("matched"), "\(v6)")
        }
    }

    /// UDP: an echo answers (open), a silent socket is open|filtered (unhealthy).
    @Test func udpEchoAndSilence() throws {
        try withProbeLab { p, lab in
            let echo = p.probe(["\(lab.serverV4):\(ProbePort.udpEcho)", "--udp", "--send", "ping", "--json"])
            #expect(echo.status == 0 && firstProbe(echo)?.string("state") == "open", "\(echo)")
            let silent = p.probe(["\(lab.serverV4):\(ProbePort.udpSilent)", "--udp", "--timeout", "500ms", "--json"])
            #expect(silent.status == 1 && firstProbe(silent)?.string("state") == "open|filtered", "\(silent)")
        }
    }

    /// Self-signed without --ca fails verification with that reason; --ca accepts it; --insecure
    /// accepts without it; days left exact; the wrong name is a hostname mismatch.
    @Test func tlsVerificationAndExpiry() throws {
        try withProbeLab { p, lab in
            let good = "probe.test:\(ProbePort.tlsSelfSigned)"
            let untrusted = p.probe([good, "--tls", "--json"])
            #expect(untrusted.status == 1, "\(untrusted)")
            let t = firstProbe(untrusted)?.object("tls")
            #expect(t?.bool("verified") == false && t?.string("verify_error") == "self-signed certificate", "\(untrusted)")
            #expect(t?.string("subject") == "CN=probe.test" && t?.strings("sans") == ["probe.test"], "\(untrusted)")
            #expect(t?.string("version")?.hasPrefix("TLSv1.") == true && t?.string("alpn") == "http/1.1", "\(untrusted)")

            let trusted = p.probe([good, "--tls", "--ca", p.pem("good"), "--json"])
            #expect(trusted.status == 0, "\(trusted)")
            let tt = firstProbe(trusted)?.object("tls")
            #expect(tt?.bool("verified") == true && tt?["verify_error"] is NSNull, "\(trusted)")
            // Made with -days 90 seconds ago: 89 whole days and some hours are left.
            #expect(tt?.int("days_left") == 89, "\(trusted)")

            let insecure = p.probe([good, "--tls", "--insecure"])
            #expect(insecure.status == 0 && insecure.stdout.contains("self-signed certificate"), "\(insecure)")

            let soon = p.probe(["probe.test:\(ProbePort.tlsTenDays)", "--tls", "--ca", p.pem("soon"), "--json"])
            #expect(soon.status == 1, "\(soon)")
            #expect(firstProbe(soon)?.object("tls")?.int("days_left") == 9, "\(soon)")
            #expect(firstProbe(soon)?.object("tls")?.bool("verified") == true, "\(soon)")
            let soonOK = p.probe(["probe.test:\(ProbePort.tlsTenDays)", "--tls", "--ca", p.pem("soon"), "--warn-days", "9"])
            #expect(soonOK.status == 0, "\(soonOK)")

            let wrong = p.probe(["probe.test:\(ProbePort.tlsWrongName)", "--tls", "--ca", p.pem("wrong"), "--json"])
            #expect(wrong.status == 1, "\(wrong)")
            #expect(firstProbe(wrong)?.object("tls")?.string("verify_error")?.hasPrefix("hostname mismatch") == true, "\(wrong)")
            // --sni names what the certificate is for: verified.
            let sni = p.probe(["\(lab.serverV4):\(ProbePort.tlsWrongName)", "--tls", "--ca", p.pem("wrong"), "--sni", "other.test"])
            #expect(sni.status == 0, "\(sni)")

            // A line over TLS: s_server -rev answers it reversed.
            let rev = p.probe([good, "--tls", "--ca", p.pem("good"), "--send", "portwatch\\n", "--expect", "hctawtrop"])
            #expect(rev.status == 0, "\(rev)")
            // TLS to a plain TCP server: the handshake fails, unhealthy.
            let plain = p.probe(["\(lab.serverV4):\(ProbePort.banner)", "--tls", "--timeout", "2s", "--json"])
            #expect(plain.status == 1, "\(plain)")
            #expect(firstProbe(plain)?.strings("problems")?.contains { $0.contains("TLS handshake") } == true, "\(plain)")
        }
    }

    /// --format nagios: status line, perfdata and exit codes OK/WARNING/CRITICAL/UNKNOWN, on
    /// probe and on check --host.
    @Test func nagiosStatusAndExitCodes() throws {
        try withProbeLab { p, lab in
            let ok = p.probe(["\(lab.serverV4):\(ProbePort.open)", "--format", "nagios"])
            #expect(ok.status == 0, "\(ok)")
            #expect(ok.stdout.range(of: #"^PORTWATCH OK - .* \| time=[0-9]+\.[0-9]{6}s;;;0\n$"#, options: .regularExpression) != nil, "\(ok)")
            let warn = p.probe(["probe.test:\(ProbePort.tlsTenDays)", "--tls", "--ca", p.pem("soon"), "--format", "nagios"])
            #expect(warn.status == 1 && warn.stdout.hasPrefix("PORTWATCH WARNING - "), "\(warn)")
            #expect(warn.stdout.contains(" days_left=9;14;7"), "\(warn)")
            let crit = p.probe(["probe.test:\(ProbePort.tlsTenDays)", "--tls", "--ca", p.pem("soon"), "--critical-days", "10",
                                "--warn-days", "20", "--format", "nagios"])
            #expect(crit.status == 2 && crit.stdout.hasPrefix("PORTWATCH CRITICAL - "), "\(crit)")
            #expect(crit.stdout.contains(" days_left=9;20;10"), "\(crit)")
            let closed = p.probe(["\(lab.serverV4):\(ProbePort.reset)", "--format", "nagios"])
            #expect(closed.status == 2 && closed.stdout.hasPrefix("PORTWATCH CRITICAL - "), "\(closed)")
            let unknown = p.probe(["\(lab.serverV4)", "--format", "nagios"])
            #expect(unknown.status == 3 && unknown.stdout.hasPrefix("PORTWATCH UNKNOWN - missing port"), "\(unknown)")
            let check = runPortwatch(["check", "--host", "\(lab.serverV4):\(ProbePort.open)", "--format", "nagios"], netns: lab.client)
            #expect(check.status == 0 && check.stdout.hasPrefix("PORTWATCH OK - tcp/\(ProbePort.open) on \(lab.serverV4)"), "\(check)")
            #expect(check.stdout.contains("| time="), "\(check)")
            let checkClosed = runPortwatch(["check", "--host", "\(lab.serverV4):\(ProbePort.reset)", "--format", "nagios"],
                                           netns: lab.client)
            #expect(checkClosed.status == 2 && checkClosed.stdout.hasPrefix("PORTWATCH CRITICAL - "), "\(checkClosed)")
        }
    }
}

@Suite("probe: bad input and local nagios", .blocking)
struct ProbeInputTests {
    /// Every malformed input: exit 2, one `portwatch: ` line, nothing on stdout.
    @Test(arguments: [
        ["probe"], ["probe", "localhost"], ["probe", "localhost:99999"], ["probe", "::1:80"],
        ["probe", "localhost:80", "--count", "0"], ["probe", "localhost:80", "--count", "-3"],
        ["probe", "localhost:80", "--udp", "--tls"], ["probe", "localhost:80", "--udp", "--expect", "x"],
        ["probe", "localhost:80", "--expect", "(unclosed"], ["probe", "localhost:80", "--send", "bad\\q"],
        ["probe", "localhost:80", "--tls", "--ca", "/nonexistent/ca.pem"], ["probe", "localhost:80", "--sni", "x"],
        ["probe", "localhost:80", "--timeout", "0s"], ["probe", "localhost:80", "--format", "xml"],
        ["probe", "localhost:80", "--json", "--insecure"], ["probe", "localhost:80", "--warn-days", "-1"],
    ])
    func badInput(_ args: [String]) {
        let r = runPortwatch(args)
        #expect(r.status == 2, "\(r)")
        #expect(r.stdout.isEmpty, "\(r)")
        #expect(r.stderrLines.count == 1 && r.stderr.hasPrefix("portwatch: "), "\(r)")
    }

    /// The same inputs under --format nagios are UNKNOWN (exit 3) with a status line.
    @Test func badInputUnderNagiosIsUnknown() {
        let r = runPortwatch(["probe", "localhost:80", "--count", "0", "--format", "nagios"])
        #expect(r.status == 3, "\(r)")
        #expect(r.stdout == "PORTWATCH UNKNOWN - invalid --count '0': must be between 1 and 100000\n", "\(r)")
    }

    /// check --format nagios locally: a port held by a listener is CRITICAL when free is
    /// expected and OK when listening is.
    @Test func localCheckNagios() throws {
        let listener = try Net.tcpListenerOnFreePort()
        defer { listener.close() }
        let free = runPortwatch(["check", "\(listener.port)", "--format", "nagios"])
        #expect(free.status == 2 && free.stdout.hasPrefix("PORTWATCH CRITICAL - tcp/\(listener.port): listening"), "\(free)")
        let listening = runPortwatch(["check", "\(listener.port)", "--expect", "listening", "--format", "nagios"])
        #expect(listening.status == 0 && listening.stdout.hasPrefix("PORTWATCH OK - "), "\(listening)")
        #expect(listening.stdout.contains("| established=0;;;0"), "\(listening)")
    }

    /// A loopback probe with --count: exit 0 and the table's latency line.
    @Test func loopbackTable() throws {
        let listener = try Net.tcpListenerOnFreePort()
        defer { listener.close() }
        let r = runPortwatch(["probe", "127.0.0.1:\(listener.port)", "--count", "3", "--interval", "0s"])
        #expect(r.status == 0, "\(r)")
        #expect(r.stdout.contains("latency ms  min") && r.stdout.contains("loss 0% of 3"), "\(r)")
    }
}

private extension Array {
    subscript(safe i: Int) -> Element? { indices.contains(i) ? self[i] : nil }
}

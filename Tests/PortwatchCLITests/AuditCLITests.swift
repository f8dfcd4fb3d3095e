// `portwatch audit` end to end, inside network namespaces the tests create (NetnsLab): real
// listeners held by python3 children, a real nftables ruleset loaded with `nft -f` in the
// namespace, and `portwatch audit --json` run there with `ip netns exec`. Nothing touches the
// host's own namespace or ruleset; fixed ports are safe because nothing else lives there.

import Foundation
import Testing
import PortwatchTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// Listeners for the audit: `KIND:HOST:PORT` with KIND `tcp` (accept and close), `udp` (bind),
/// `redis` (answers PING with +PONG, like a redis without a password). HOST `::` (spec `tcp::::PORT`) is dual-stack.
/// Prints "ready" once every socket listens: the tests' readiness signal.
private let auditServerScript = #"""
import os, select, signal, socket, sys
signal.signal(signal.SIGTERM, signal.SIG_DFL)
socks = {}
for spec in sys.argv[1:]:
    kind, rest = spec.split(":", 1)
    host, port = rest.rsplit(":", 1)
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    typ = socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM
    s = socket.socket(fam, typ)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if fam == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0 if host == "::" else 1)
    s.bind((host, int(port)))
    if typ == socket.SOCK_STREAM:
        s.listen(16)
    socks[s.fileno()] = (kind, s)
print("ready", flush=True)
while True:
    ready, _, _ = select.select([0] + list(socks), [], [], 60)
    for fd in ready:
        if fd == 0:
            if not os.read(0, 4096):
                sys.exit(0)
            continue
        kind, s = socks[fd]
        try:
            if kind == "udp":
                s.recvfrom(65535)
                continue
            c, _ = s.accept()
            if kind == "redis":
                c.settimeout(2)
                if c.recv(64).startswith(b"PING"):
                    c.sendall(b"+PONG\r\n")
            c.close()
        except OSError:
            pass
"""#

/// A python3 child holding the listeners of `specs` inside `netns`; `interpreter` lets a test
/// run the same script from another executable (an "owner changed" listener).
private final class AuditServer: @unchecked Sendable {
    let child: Child

    init(_ specs: [String], netns: String, interpreter: String? = nil) throws {
        guard let python = interpreter ?? TestEnv.python3, let ip = TestEnv.ip else { throw SupportError("python3 or ip missing") }
        child = try Child.spawn(ip, ["netns", "exec", netns, python, "-u", "-c", auditServerScript] + specs, stdin: .pipe)
        guard child.readLine(timeout: 10) == "ready" else {
            let err = child.drainStderr()
            child.kill()
            throw SupportError("audit server \(specs) did not start: \(err)")
        }
    }

    func stop() { child.kill() }
}

private let auditRuleset = """
    table inet pwaudit {
        chain input {
            type filter hook input priority 0; policy drop;
            ct state established,related accept
            iifname "lo" accept
            tcp dport { 18080, 6379 } accept
            tcp dport 18081 reject with tcp reset
            udp dport 18053 accept
        }
    }
    """

private func listener(_ doc: [String: Any], _ proto: String, _ port: Int) -> [String: Any]? {
    doc.objects("listeners").first { $0.string("protocol") == proto && $0.int("port") == port }
}

@Suite("audit: exposure, firewall verdicts, risky services and drift in a namespace", .blocking,
       .enabled(if: TestEnv.canCreateNamespaces, "needs root with CAP_NET_ADMIN, ip, nft and python3 to build namespaces"))
struct AuditCLITests {
    @Test func verdictsPerPortAndRiskyRedis() throws {
        let lab = try NetnsLab()
        defer { lab.destroy() }
        try lab.nft(lab.server, auditRuleset)
        let server = try AuditServer(["tcp:0.0.0.0:18080", "tcp:0.0.0.0:18081", "tcp:0.0.0.0:18082", "udp:0.0.0.0:18053",
                                      "redis::::6379"], netns: lab.server)
        defer { server.stop() }
        let run = runPortwatch(["audit", "--json"], netns: lab.server)
        #expect(run.status == 0, "\(run)")
        guard let doc = run.json() else { return }
        func verdict(_ proto: String, _ port: Int) -> String? { listener(doc, proto, port)?.object("firewall")?.string("verdict") }
        #expect(verdict("tcp", 18080) == "accept")
        #expect(verdict("tcp", 18081) == "reject")
        #expect(verdict("tcp", 18082) == "drop")
        #expect(listener(doc, "tcp", 18082)?.object("firewall")?.string("rule")?.contains("policy drop") == true)
        #expect(verdict("udp", 18053) == "accept")
        #expect(listener(doc, "tcp", 18080)?.string("exposure") == "any")

        let redis = try #require(listener(doc, "tcp", 6379), "\(run)")
        #expect(redis.string("exposure") == "any")
        #expect(redis.strings("families") == ["ipv4", "ipv6"])
        #expect(redis.object("firewall")?.string("verdict") == "accept")
        #expect(redis.string("banner") == "+PONG")
        #expect(redis.pids().contains(server.child.pid) || redis.objects("processes").contains { $0.string("name")?.hasPrefix("python") == true },
                "\(redis)")
        #expect(redis.objects("findings").contains { $0.string("severity") == "high" }, "\(redis)")
        let top = doc.objects("findings")
        #expect(top.contains { $0.string("severity") == "high" && $0.int("port") == 6379 && $0.string("protocol") == "tcp" }, "\(top)")
        #expect(doc["drift"] is NSNull)
        // Not risky ports: no findings, however open.
        #expect(listener(doc, "tcp", 18080)?.objects("findings").isEmpty == true)

        // --fail-on high: the redis finding makes the answer "no".
        let failing = runPortwatch(["audit", "--fail-on", "high"], netns: lab.server)
        #expect(failing.status == 1, "\(failing)")
        #expect(failing.stdout.contains("6379") && failing.stdout.contains("HIGH"), "\(failing)")
    }

    @Test func loopbackRedisIsNoFindingAndNoRulesetIsNone() throws {
        let lab = try NetnsLab()
        defer { lab.destroy() }
        let server = try AuditServer(["redis:127.0.0.1:6379", "tcp::::18080"], netns: lab.client)
        defer { server.stop() }
        let run = runPortwatch(["audit", "--json", "--fail-on", "low"], netns: lab.client)
        #expect(run.status == 0, "\(run)")
        guard let doc = run.json() else { return }
        let redis = try #require(listener(doc, "tcp", 6379), "\(run)")
        #expect(redis.string("exposure") == "loopback")
        #expect(redis.strings("interfaces") == ["lo"])
        #expect(redis.objects("findings").isEmpty)
        #expect(doc.objects("findings").isEmpty, "\(run)")
        #expect(redis.object("firewall")?.string("verdict") == "none")
        #expect(doc.string("firewall") == "no firewall loaded")
        let web = try #require(listener(doc, "tcp", 18080))
        #expect(web.string("exposure") == "any" && web.strings("families") == ["ipv4", "ipv6"])
        #expect(web.strings("interfaces")?.contains("pwc") == true, "\(web)")
        let table = runPortwatch(["audit"], netns: lab.client)
        #expect(table.status == 0 && table.stdout.contains("no firewall loaded") && table.stdout.contains("loopback"), "\(table)")
    }

    @Test func baselineDrift() throws {
        let lab = try NetnsLab()
        defer { lab.destroy() }
        let baseline = "/tmp/pw-audit-baseline-\(getpid()).json"
        // The same script run from a copy of the interpreter: another executable holds the port.
        let otherPython = "/tmp/pw-audit-python-\(getpid())"
        defer { unlink(baseline); unlink(otherPython) }
        let python = try #require(TestEnv.python3)
        #expect(runTool("/bin/cp", ["-L", python, otherPython]).status == 0)

        let first = try AuditServer(["tcp:0.0.0.0:19001", "tcp:0.0.0.0:19002"], netns: lab.server)
        let save = runPortwatch(["audit", "--json", "--save-baseline", baseline], netns: lab.server)
        #expect(save.status == 0, "\(save)")
        let unchanged = runPortwatch(["audit", "--json", "--baseline", baseline, "--fail-on", "low"], netns: lab.server)
        #expect(unchanged.status == 0, "\(unchanged)")
        if let doc = unchanged.json() {
            let drift = doc.object("drift")
            #expect(drift?.objects("new").isEmpty == true && drift?.objects("gone").isEmpty == true
                    && drift?.objects("owner_changed").isEmpty == true, "\(unchanged)")
        }
        first.stop()

        let second = try AuditServer(["tcp:0.0.0.0:19001", "tcp:0.0.0.0:19003"], netns: lab.server, interpreter: otherPython)
        defer { second.stop() }
        let run = runPortwatch(["audit", "--json", "--baseline", baseline], netns: lab.server)
        #expect(run.status == 0, "\(run)")
        guard let doc = run.json(), let drift = doc.object("drift") else { Issue.record("no drift: \(run)"); return }
        #expect(drift.objects("new").map { $0.int("port") } == [19003], "\(drift)")
        #expect(drift.objects("gone").map { $0.int("port") } == [19002], "\(drift)")
        let changed = drift.objects("owner_changed")
        #expect(changed.map { $0.int("port") } == [19001], "\(drift)")
        #expect(changed.first?.strings("after") == [otherPython], "\(drift)")
        #expect(changed.first?.strings("before")?.first?.contains("python") == true, "\(drift)")
        #expect(doc.objects("findings").contains { $0.int("port") == 19001 && $0.string("severity") == "high" }, "\(run)")
        let failing = runPortwatch(["audit", "--baseline", baseline, "--fail-on", "high"], netns: lab.server)
        #expect(failing.status == 1 && failing.stdout.contains("drift since"), "\(failing)")
    }

    /// A TLS server with a certificate made here, expiring in 5 days, on a well-known TLS port
    /// (8443) and, with --tls-all, on an ordinary one; a plain listener on 9443 has no TLS.
    @Test func tlsCertificateDaysLeftAndFindings() throws {
        let lab = try NetnsLab()
        defer { lab.destroy() }
        let openssl = try #require(TestEnv.which("openssl"))
        let ip = try #require(TestEnv.ip)
        let dir = "/tmp/pw-audit-tls-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let made = runTool(openssl, ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                                     "-keyout", "\(dir)/k.pem", "-out", "\(dir)/c.pem", "-days", "5", "-subj", "/CN=pw-audit-test"])
        #expect(made.status == 0, "\(made)")
        var servers: [Child] = []
        defer { for c in servers { c.kill() } }
        for port in [8443, 18443] {
            let child = try Child.spawn(ip, ["netns", "exec", lab.server, openssl, "s_server", "-accept", "\(port)",
                                             "-cert", "\(dir)/c.pem", "-key", "\(dir)/k.pem", "-naccept", "50"], stdin: .pipe)
            servers.append(child)
            var ready = false
            for _ in 0..<20 {
                guard let line = child.readLine(timeout: 10) else { break }
                if line.contains("ACCEPT") { ready = true; break }
            }
            try #require(ready, "openssl s_server on \(port): \(child.drainStderr())")
        }
        let plain = try AuditServer(["tcp:0.0.0.0:9443"], netns: lab.server)
        defer { plain.stop() }

        let run = runPortwatch(["audit", "--json"], netns: lab.server)
        #expect(run.status == 0, "\(run)")
        guard let doc = run.json() else { return }
        let tls = try #require(listener(doc, "tcp", 8443)?.object("tls"), "\(run)")
        #expect((4...5).contains(tls.int("days_left") ?? -1), "\(tls)")
        #expect(tls.string("version")?.hasPrefix("TLSv1.") == true, "\(tls)")
        #expect(tls.string("not_after")?.isEmpty == false)
        #expect(tls["verified"] as? Bool == false)
        #expect(tls.string("verify_error") == "self-signed certificate", "\(tls)")
        let found = listener(doc, "tcp", 8443)?.objects("findings") ?? []
        #expect(found.contains { $0.string("severity") == "medium" && $0.string("reason")?.contains("expires in") == true }, "\(found)")
        // Wildcard listener, reachable from outside: the self-signed certificate is a low finding too.
        #expect(found.contains { $0.string("severity") == "low" && $0.string("reason")?.contains("self-signed") == true }, "\(found)")
        #expect(doc.objects("findings").contains { $0.int("port") == 8443 && $0.string("severity") == "medium" })
        // A plain listener on a TLS port, and a TLS server on a port not known for TLS: no handshake report.
        #expect(listener(doc, "tcp", 9443)?["tls"] is NSNull, "\(run)")
        #expect(listener(doc, "tcp", 18443)?["tls"] is NSNull, "\(run)")

        // --tls-all tries every TCP listener: the TLS server on 18443 is found, the plain one still has none.
        let all = runPortwatch(["audit", "--json", "--tls-all", "--tls-timeout", "2"], netns: lab.server)
        #expect(all.status == 0, "\(all)")
        if let doc = all.json() {
            #expect((4...5).contains(listener(doc, "tcp", 18443)?.object("tls")?.int("days_left") ?? -1), "\(all)")
            #expect(listener(doc, "tcp", 9443)?["tls"] is NSNull, "\(all)")
        }
        let table = runPortwatch(["audit", "--fail-on", "medium"], netns: lab.server)
        #expect(table.status == 1, "\(table)")
        #expect(table.stdout.contains("TLSv1.") && table.stdout.contains("expires in"), "\(table)")
        let off = runPortwatch(["audit", "--json", "--no-tls"], netns: lab.server)
        #expect(off.json().flatMap { listener($0, "tcp", 8443)?["tls"] } is NSNull, "\(off)")
        let bad = runPortwatch(["audit", "--tls-timeout", "-1"])
        #expect(bad.status == 2 && bad.stderrLines.count == 1 && bad.stderr.hasPrefix("portwatch: "), "\(bad)")
    }

    @Test func badInputIsOneLineExitTwo() throws {
        let garbage = "/tmp/pw-audit-garbage-\(getpid()).json"
        defer { unlink(garbage) }
        try "{not json".write(toFile: garbage, atomically: true, encoding: .utf8)
        for args in [["audit", "--baseline", garbage], ["audit", "--baseline", "/nonexistent/pw.json"],
                     ["audit", "--fail-on", "critical"], ["audit", "--save-baseline", "/nonexistent/dir/b.json"]] {
            let run = runPortwatch(args)
            #expect(run.status == 2, "\(run)")
            #expect(run.stderrLines.count == 1 && run.stderr.hasPrefix("portwatch: "), "\(run)")
        }
    }
}

// Remote verdicts against a namespace test host (see NetnsLab): silent UDP, hosts with a port,
// link-local zones, prohibit and blackhole routes, hosts with several addresses, and a resolver
// that never answers.

import Foundation
import Testing
import PortwatchTestSupport
#if canImport(Glibc)
import Glibc
#endif

private enum Port {
    static let open: UInt16 = 19080
    static let closed: UInt16 = 19083
    static let udpSilent: UInt16 = 19053
    static let udpEcho: UInt16 = 19054
}

extension NetnsLab {
    /// Runs `ip ARGS` and fails the test when it fails.
    func ip(_ args: [String], sourceLocation: SourceLocation = #_sourceLocation) {
        let r = runTool(TestEnv.ip ?? "ip", args)
        #expect(r.status == 0, "ip \(args.joined(separator: " ")): \(r.stderr)", sourceLocation: sourceLocation)
    }

    /// Files `ip netns exec` mounts over /etc inside the client namespace (hosts, resolv.conf).
    func clientEtc(_ files: [String: String]) throws {
        let dir = "/etc/netns/\(client)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        for (name, text) in files {
            try text.write(toFile: "\(dir)/\(name)", atomically: true, encoding: .utf8)
        }
    }

    func removeClientEtc() {
        try? FileManager.default.removeItem(atPath: "/etc/netns/\(client)")
    }
}

/// A lab with a TCP listener, a UDP echo and a UDP socket that never answers.
private func withRemoteLab(_ body: (NetnsLab) throws -> Void) throws {
    let lab = try NetnsLab()
    defer {
        lab.removeClientEtc()
        lab.destroy()
    }
    _ = try lab.startServer(["tcp::::\(Port.open)", "udp-echo::::\(Port.udpEcho)", "udp-silent::::\(Port.udpSilent)"],
                            in: lab.server)
    try body(lab)
}

@Suite("namespace: remote verdicts (silent UDP, zones, routes, several addresses, resolver)", .blocking,
       .enabled(if: TestEnv.canCreateNamespaces,
                "needs root with CAP_NET_ADMIN, ip, nft and python3 to build a network namespace test host"))
struct RemoteVerdictTests {
    /// A bound UDP socket that never answers is open|filtered, not filtered; waiting for it to
    /// be open cannot be decided (exit 2); an echo is open.
    @Test func silentUDPIsOpenFiltered() throws {
        try withRemoteLab { lab in
            for host in [lab.serverV4, lab.serverV6] {
                let silent = runPortwatch(["check", "\(Port.udpSilent)/udp", "--host", host, "--timeout", "500ms", "--json"],
                                          netns: lab.client)
                #expect(silent.json()?.string("verdict") == "open|filtered", "\(silent)")
                #expect(silent.status == 1, "\(silent)")
                let expected = runPortwatch(["check", "\(Port.udpSilent)/udp", "--host", host, "--timeout", "500ms",
                                             "--expect", "open|filtered"], netns: lab.client)
                #expect(expected.status == 0, "\(expected)")
            }
            let wait = runPortwatch(["wait", "\(Port.udpSilent)/udp", "--host", lab.serverV4, "--until", "open",
                                     "--timeout", "1s"], netns: lab.client)
            #expect(wait.status == 2, "\(wait)")
            #expect(wait.stderr.contains("cannot tell"), "\(wait)")
            let echo = runPortwatch(["wait", "\(Port.udpEcho)/udp", "--host", lab.serverV4, "--until", "open",
                                     "--timeout", "3s"], netns: lab.client)
            #expect(echo.status == 0, "\(echo)")
        }
    }

    /// `--host '[v6]:port'`, `--host v4:port` and a link-local address with its zone.
    @Test func hostWithPortAndZone() throws {
        try withRemoteLab { lab in
            let bracketed = runPortwatch(["check", "--host", "[\(lab.serverV6)]:\(Port.open)", "--json"], netns: lab.client)
            #expect(bracketed.status == 0, "\(bracketed)")
            #expect(bracketed.json()?.int("port") == Int(Port.open))
            let v4 = runPortwatch(["wait", "--host", "\(lab.serverV4):\(Port.open)", "--until", "open", "--timeout", "3s"],
                                  netns: lab.client)
            #expect(v4.status == 0, "\(v4)")
            let clash = runPortwatch(["check", "80", "--host", "\(lab.serverV4):\(Port.open)"], netns: lab.client)
            #expect(clash.status == 2, "\(clash)")

            lab.ip(["-n", lab.server, "-6", "addr", "add", "fe80::2/64", "dev", "pws", "nodad"])
            let zoned = runPortwatch(["check", "\(Port.open)", "--host", "fe80::2%pwc", "--json"], netns: lab.client)
            #expect(zoned.status == 0, "\(zoned)")
            #expect(zoned.json()?.string("address") == "fe80::2%pwc")
            let bracketZone = runPortwatch(["check", "--host", "[fe80::2%pwc]:\(Port.closed)", "--expect", "closed"],
                                           netns: lab.client)
            #expect(bracketZone.status == 0, "\(bracketZone)")
            let noZone = runPortwatch(["check", "\(Port.open)", "--host", "fe80::2"], netns: lab.client)
            #expect(noZone.status == 2 && noZone.stderr.contains("%"), "\(noZone)")
        }
    }

    /// `prohibit` (EACCES) and `blackhole` (EINVAL) routes are unreachable, exit 1, with the reason.
    @Test func prohibitAndBlackholeRoutesAreUnreachable() throws {
        try withRemoteLab { lab in
            let n = lab.n
            lab.ip(["-n", lab.client, "route", "add", "prohibit", "10.251.\(n).0/24"])
            lab.ip(["-n", lab.client, "route", "add", "blackhole", "10.252.\(n).0/24"])
            lab.ip(["-n", lab.client, "-6", "route", "add", "prohibit", "fd00:251:\(n)::/64"])
            lab.ip(["-n", lab.client, "-6", "route", "add", "blackhole", "fd00:252:\(n)::/64"])
            let cases: [(String, String)] = [("10.251.\(n).2", "prohibited"), ("10.252.\(n).2", "blackhole"),
                                             ("fd00:251:\(n)::2", "prohibited"), ("fd00:252:\(n)::2", "blackhole")]
            for (host, reason) in cases {
                for proto in ["tcp", "udp"] {
                    let r = runPortwatch(["check", "80/\(proto)", "--host", host, "--json"], netns: lab.client)
                    #expect(r.status == 1, "\(host) \(proto): \(r)")
                    #expect(r.json()?.string("verdict") == "unreachable", "\(host) \(proto): \(r)")
                    #expect(r.json()?.string("reason")?.contains(reason) == true, "\(host) \(proto): \(r)")
                }
                let text = runPortwatch(["check", "80", "--host", host, "--expect", "unreachable"], netns: lab.client)
                #expect(text.status == 0 && text.stderr.isEmpty, "\(text)")
            }
        }
    }

    /// A name with several addresses: open when any accepts; otherwise the strongest answer
    /// (closed beats unreachable). `check` and `wait` agree.
    @Test func severalAddressesOneRule() throws {
        try withRemoteLab { lab in
            let n = lab.n
            lab.ip(["-n", lab.client, "route", "add", "blackhole", "10.252.\(n).0/24"])
            try lab.clientEtc(["hosts": """
                127.0.0.1 localhost
                10.252.\(n).2 twohomes
                \(lab.serverV6) twohomes
                """])
            let open = runPortwatch(["check", "\(Port.open)", "--host", "twohomes", "--json"], netns: lab.client)
            #expect(open.status == 0, "\(open)")
            #expect(open.json()?.string("address") == lab.serverV6, "\(open)")
            #expect(open.json()?.objects("attempts").count == 2, "\(open)")

            let closed = runPortwatch(["check", "\(Port.closed)", "--host", "twohomes", "--json"], netns: lab.client)
            #expect(closed.json()?.string("verdict") == "closed", "\(closed)")
            let waitClosed = runPortwatch(["wait", "\(Port.closed)", "--host", "twohomes", "--until", "closed", "--timeout", "3s"],
                                          netns: lab.client)
            #expect(waitClosed.status == 0, "\(waitClosed)")
            let waitOpen = runPortwatch(["wait", "\(Port.open)", "--host", "twohomes", "--until", "open", "--timeout", "3s"],
                                        netns: lab.client)
            #expect(waitOpen.status == 0, "\(waitOpen)")
        }
    }

    /// `--timeout` bounds name resolution: a resolver whose queries are dropped does not hold
    /// `check` for the resolver's own 5 s × retries.
    @Test func timeoutBoundsResolution() throws {
        try withRemoteLab { lab in
            try lab.nft(lab.server, """
                table inet pw_dns {
                    chain input { type filter hook input priority 0; policy accept; udp dport 53 drop; tcp dport 53 drop; }
                }
                """)
            try lab.clientEtc(["resolv.conf": "nameserver \(lab.serverV4)\noptions timeout:5 attempts:2\n",
                               "hosts": "127.0.0.1 localhost\n"])
            let r = runPortwatch(["check", "80", "--host", "nowhere.portwatch.test", "--timeout", "1s"], timeout: 30,
                                 netns: lab.client)
            #expect(r.status == 2, "\(r)")
            #expect(r.stderr.contains("no answer from the resolver"), "\(r)")
            // Well below the resolver's own 10 s (this bounds the behaviour, not the machine's speed).
            #expect(r.seconds < 8, "\(r)")
        }
    }
}

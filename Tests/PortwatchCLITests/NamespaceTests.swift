// Remote checks against a test host in a private network namespace.
//
// Each test builds its own pair of namespaces joined by a veth pair (see `NetnsLab`): the server
// side runs python3 listeners and an nftables table; `portwatch` runs on the client side through
// `ip netns exec`. Nothing touches the test machine's own network namespace, and the namespaces
// (with the veth pair and the children in them) are deleted by `defer` even when a check fails.
//
// These need root (CAP_NET_ADMIN and CAP_SYS_ADMIN for `ip netns`), `ip`, `nft` and python3.
// Without them the suite is skipped, with the reason shown, so `swift test` passes for a
// newcomer running as an ordinary user.

import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Ports inside the lab's server namespace (nothing else lives there, so fixed numbers are safe).
private enum LabPort {
    /// A python3 TCP listener that accepts and closes.
    static let open: UInt16 = 18080
    /// nft drops TCP to this port: no answer.
    static let dropped: UInt16 = 18081
    /// nft rejects TCP to this port with ICMP host-unreachable (ICMPv6 address-unreachable).
    static let rejected: UInt16 = 18082
    /// Nothing listens, no rule: the kernel answers RST.
    static let closed: UInt16 = 18083
    /// Nothing listens yet; a test starts a listener here while `wait` runs.
    static let later: UInt16 = 18084
    /// A python3 UDP echo.
    static let udpEcho: UInt16 = 18053
    /// Nothing bound: ICMP port-unreachable.
    static let udpClosed: UInt16 = 18054
}

private let labRuleset = """
    table inet portwatch_test {
        chain input {
            type filter hook input priority 0; policy accept;
            tcp dport \(LabPort.dropped) drop
            meta nfproto ipv4 tcp dport \(LabPort.rejected) reject with icmp type host-unreachable
            meta nfproto ipv6 tcp dport \(LabPort.rejected) reject with icmpv6 type addr-unreachable
        }
    }
    """

/// Builds a lab with the ruleset and the python3 servers, runs `body`, and always tears it down.
private func withLab(_ body: (NetnsLab) throws -> Void) throws {
    let lab = try NetnsLab()
    defer { lab.destroy() }
    try lab.nft(lab.server, labRuleset)
    _ = try lab.startServer(["tcp::::\(LabPort.open)", "udp-echo::::\(LabPort.udpEcho)"], in: lab.server)
    try body(lab)
}

@Suite("namespace: remote verdicts through a veth pair", .blocking,
       // Root, `ip`, `nft` and python3, and namespaces that can really be created (root in an
       // unprivileged container cannot); otherwise skipped with this reason.
       .enabled(if: TestEnv.canCreateNamespaces,
                "needs root with CAP_NET_ADMIN, ip, nft and python3 to build a network namespace test host"))
struct NamespaceTests {
    /// open / closed / filtered / unreachable over IPv4 and IPv6.
    @Test(arguments: ["v4", "v6"])
    func tcpVerdicts(_ family: String) throws {
        try withLab { lab in
            let host = family == "v4" ? lab.serverV4 : lab.serverV6
            func check(_ port: UInt16, _ extra: [String] = []) throws -> PortwatchRun {
                try startPortwatch(["check", "\(port)", "--host", host, "--json"] + extra, netns: lab.client)
            }
            // Started together: the filtered one takes its full timeout.
            let filteredRun = try check(LabPort.dropped, ["--timeout", "1s"])
            let openRun = try check(LabPort.open)
            let closedRun = try check(LabPort.closed)
            let unreachableRun = try check(LabPort.rejected)

            let open = openRun.finish()
            #expect(open.status == 0, "\(open)")
            #expect(open.json()?.string("verdict") == "open")
            #expect(open.json()?.string("host") == host)
            #expect(open.json()?.string("address") == host)
            #expect(open.json()?.bool("matched") == true)
            #expect(open.json()?.string("expected") == "open")
            #expect(open.json()?.int("port") == Int(LabPort.open))

            let closed = closedRun.finish()
            #expect(closed.json()?.string("verdict") == "closed", "\(closed)")
            #expect(closed.status == 1)

            let unreachable = unreachableRun.finish()
            #expect(unreachable.json()?.string("verdict") == "unreachable", "\(unreachable)")
            #expect(unreachable.status == 1)

            let filtered = filteredRun.finish()
            #expect(filtered.json()?.string("verdict") == "filtered", "\(filtered)")
            #expect(filtered.status == 1)
            #expect(filtered.seconds >= 1, "\(filtered)")

            // Expectations against remote verdicts.
            let expectClosed = runPortwatch(["check", "\(LabPort.open)", "--host", host, "--expect", "closed"], netns: lab.client)
            #expect(expectClosed.status == 1, "\(expectClosed)")
            let closedMet = runPortwatch(["check", "\(LabPort.closed)", "--host", host, "--expect", "closed"], netns: lab.client)
            #expect(closedMet.status == 0, "\(closedMet)")
            let unreachableMet = runPortwatch(["check", "\(LabPort.rejected)", "--host", host, "--expect", "unreachable"],
                                              netns: lab.client)
            #expect(unreachableMet.status == 0, "\(unreachableMet)")

            // Several ports at once: one document with every verdict.
            let many = runPortwatch(["check", "\(LabPort.open),\(LabPort.closed)", "--host", host, "--json"], netns: lab.client)
            #expect(many.status == 1, "not every port is open: \(many)")
            let verdicts = many.json()?.objects("checks").map { "\($0.int("port") ?? 0):\($0.string("verdict") ?? "?")" }
            #expect(verdicts == ["\(LabPort.open):open", "\(LabPort.closed):closed"], "\(many)")
            #expect(many.json()?.bool("matched") == false)
        }
    }

    /// `wait --host`: until open (already, and a listener that appears later), until closed, timeout.
    @Test func waitRemote() throws {
        try withLab { lab in
            let host = lab.serverV4
            let already = runPortwatch(["wait", "\(LabPort.open)", "--host", host, "--until", "open", "--timeout", "3s"],
                                       netns: lab.client)
            #expect(already.status == 0, "\(already)")

            let run = try startPortwatch(["wait", "\(LabPort.later)", "--host", host, "--until", "open",
                                          "--timeout", "30s", "--json"], netns: lab.client)
            // Nothing listens there yet: a `wait` that already ended would be wrong.
            #expect(!run.child.reap(), "wait --until open ended before the listener existed")
            _ = try lab.startServer(["tcp::::\(LabPort.later)"], in: lab.server)
            let later = run.finish(timeout: 40)
            #expect(later.status == 0, "\(later)")
            #expect(later.json()?.bool("reached") == true)

            let closed = runPortwatch(["wait", "\(LabPort.closed)", "--host", host, "--until", "closed", "--timeout", "3s"],
                                      netns: lab.client)
            #expect(closed.status == 0, "\(closed)")

            let never = runPortwatch(["wait", "\(LabPort.dropped)", "--host", host, "--until", "open", "--timeout", "1s"],
                                     netns: lab.client)
            #expect(never.status == 1, "\(never)")
            #expect(never.seconds >= 1, "it waited out its timeout: \(never)")
        }
    }

    /// UDP: an echo answers (open), an unbound port answers ICMP port-unreachable (closed).
    @Test func udpVerdicts() throws {
        try withLab { lab in
            for host in [lab.serverV4, lab.serverV6] {
                let open = runPortwatch(["check", "\(LabPort.udpEcho)/udp", "--host", host, "--json"], netns: lab.client)
                #expect(open.status == 0, "\(host): \(open)")
                #expect(open.json()?.string("verdict") == "open")
                #expect(open.json()?.string("protocol") == "udp")

                let closed = runPortwatch(["check", "\(LabPort.udpClosed)/udp", "--host", host, "--json"], netns: lab.client)
                #expect(closed.status == 1, "\(host): \(closed)")
                #expect(closed.json()?.string("verdict") == "closed", "\(host): \(closed)")

                let flag = runPortwatch(["check", "\(LabPort.udpEcho)", "--udp", "--host", host], netns: lab.client)
                #expect(flag.status == 0, "\(host): \(flag)")
            }
        }
    }

    /// The lab itself: both namespaces and the veth pair are gone after `destroy`.
    @Test func labCleansUp() throws {
        let lab = try NetnsLab()
        let names = [lab.client, lab.server]
        let server = try lab.startServer(["tcp::::\(LabPort.open)"], in: lab.server)
        lab.destroy()
        for name in names {
            #expect(access("/run/netns/\(name)", F_OK) != 0, "namespace \(name) left behind")
        }
        #expect(server.child.wait(timeout: 1) != nil, "the server child was not reaped")
        let list = runTool(TestEnv.ip ?? "ip", ["netns", "list"])
        #expect(!names.contains { list.stdout.contains($0) }, "\(list.stdout)")
    }

    /// A lab whose set-up fails midway (a name `ip` rejects) deletes the namespaces it made.
    @Test func labFailingMidwayCleansUp() throws {
        let made = "pw-\(getpid())-\(NamespaceLab.nextSerial())m"
        #expect(throws: SupportError.self) { _ = try NamespaceLab(names: [made, "pw/invalid"]) }
        #expect(access("/run/netns/\(made)", F_OK) != 0, "namespace \(made) left behind")
    }
}

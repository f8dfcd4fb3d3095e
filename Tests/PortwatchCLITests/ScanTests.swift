// `portwatch scan` against namespace test hosts: every answer nmap knows (accept, reset, ICMP
// port-unreachable, ICMP admin-prohibited, silence) compared port by port with nmap on the same
// host in the same test; a full-range loopback scan; a CIDR block; UDP with and without the
// kernel's ICMP rate limit; bad input.

import Foundation
import Testing
import PortwatchTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// Ports of the namespace host (inside namespaces of the test's own, so fixed numbers are safe).
private enum ScanHost {
    static let tcpOpen: [UInt16] = [22, 80, 8080]
    static let dropped: ClosedRange<UInt16> = 1000...1009
    static let reset: ClosedRange<UInt16> = 1010...1019
    static let portUnreachable: ClosedRange<UInt16> = 1020...1029
    static let adminProhibited: ClosedRange<UInt16> = 1030...1039
    static let udpEcho: [UInt16] = [53, 123, 161]
    static let udpSilent: UInt16 = 5000
    static let udpDropped: UInt16 = 7000
    static let udpProhibited: UInt16 = 6000

    /// The firewall of the test host, for both address families.
    static let ruleset = """
        table inet pwscan {
          chain input {
            type filter hook input priority 0; policy accept;
            tcp dport \(dropped.lowerBound)-\(dropped.upperBound) drop
            tcp dport \(reset.lowerBound)-\(reset.upperBound) reject with tcp reset
            tcp dport \(portUnreachable.lowerBound)-\(portUnreachable.upperBound) reject with icmpx type port-unreachable
            tcp dport \(adminProhibited.lowerBound)-\(adminProhibited.upperBound) reject with icmpx type admin-prohibited
            udp dport \(udpDropped) drop
            udp dport \(udpProhibited) reject with icmpx type admin-prohibited
          }
        }
        """
}

private let nmapPath = TestEnv.which("nmap")

/// A lab whose server side listens on the fixed ports and filters with `ScanHost.ruleset`;
/// `icmpRateLimit` sets the server's net.ipv4/ipv6 ICMP rate limit (ms; the kernel default is 1000).
private func withScanLab(icmpRateLimit: Int? = 0, _ body: (NetnsLab) throws -> Void) throws {
    let lab = try NetnsLab()
    defer { lab.destroy() }
    let tcp = ScanHost.tcpOpen.map { "tcp::::\($0)" }
    let udp = ScanHost.udpEcho.map { "udp-echo::::\($0)" } + ["udp-silent::::\(ScanHost.udpSilent)"]
    _ = try lab.startServer(tcp + udp, in: lab.server)
    try lab.nft(lab.server, ScanHost.ruleset)
    if let limit = icmpRateLimit {
        lab.exec(lab.server, ["sysctl", "-qw", "net.ipv4.icmp_ratelimit=\(limit)", "net.ipv6.icmp.ratelimit=\(limit)"])
    }
    try body(lab)
}

/// Port → state from `portwatch scan --json --show-closed`, for one host.
private func portwatchStates(_ result: PortwatchResult, host index: Int = 0) -> [UInt16: String] {
    guard let doc = result.json(), index < doc.objects("targets").count else { return [:] }
    var out: [UInt16: String] = [:]
    for p in doc.objects("targets")[index].objects("ports") {
        if let port = p.int("port"), let state = p.string("state") { out[UInt16(port)] = state }
    }
    return out
}

/// Port → state from nmap's grepable output (`-oG -`) for `ports`: listed ports as listed, the
/// rest in the "Ignored State".
private func nmapStates(_ output: String, ports: [UInt16]) -> [UInt16: String] {
    var listed: [UInt16: String] = [:]
    var ignored = "closed"
    for line in output.split(separator: "\n") where line.hasPrefix("Host:") && (line.contains("Ports:") || line.contains("Ignored State:")) {
        let portsPart = line.range(of: "Ports: ").map { line[$0.upperBound...].components(separatedBy: "\t").first ?? "" } ?? ""
        for entry in portsPart.components(separatedBy: ", ") where !entry.isEmpty {
            let fields = entry.split(separator: "/", omittingEmptySubsequences: false)
            if fields.count >= 2, let port = UInt16(fields[0].trimmingCharacters(in: .whitespaces)) {
                listed[port] = String(fields[1])
            }
        }
        if let range = line.range(of: "Ignored State: ") {
            ignored = String(line[range.upperBound...].prefix { $0 != " " })
        }
    }
    var out: [UInt16: String] = [:]
    for port in ports { out[port] = listed[port] ?? ignored }
    return out
}

private func portList(_ ports: [UInt16]) -> String { ports.map(String.init).joined(separator: ",") }

@Suite("scan: namespace hosts compared with nmap", .blocking,
       .enabled(if: TestEnv.canCreateNamespaces && nmapPath != nil,
                "needs root with CAP_NET_ADMIN, ip, nft, python3 and nmap"))
struct ScanTests {
    /// TCP over IPv4 and IPv6: accept → open, drop → filtered, reset and ICMP port-unreachable →
    /// closed, ICMP admin-prohibited → filtered, exactly as nmap -sT says for every port.
    @Test func tcpStatesMatchNmap() throws {
        try withScanLab { lab in
            let ports = Array(UInt16(1)...UInt16(1100)) + [8080]
            for host in [lab.serverV4, lab.serverV6] {
                let scan = runPortwatch(["scan", host, "-p", "1-1100,8080", "--show-closed", "--json"], timeout: 60, netns: lab.client)
                #expect(scan.status == 0, "\(scan)")
                let ours = portwatchStates(scan)
                #expect(ours.count == ports.count, "\(host): \(ours.count) ports decided")
                for port in ScanHost.tcpOpen { #expect(ours[port] == "open", "\(host) \(port)") }
                for port in ScanHost.dropped { #expect(ours[port] == "filtered", "\(host) \(port)") }
                for port in ScanHost.reset { #expect(ours[port] == "closed", "\(host) \(port)") }
                for port in ScanHost.portUnreachable { #expect(ours[port] == "closed", "\(host) \(port)") }
                for port in ScanHost.adminProhibited { #expect(ours[port] == "filtered", "\(host) \(port)") }
                #expect(ours[1] == "closed" && ours[1100] == "closed")

                let family = host.contains(":") ? ["-6"] : []
                // nmap takes an ICMP reject only once the kernel resends the SYN (after 1 s; the
                // first ICMP arrives while connect() holds the socket and is kept as a soft
                // error): with a shorter timeout it calls those ports filtered, at random.
                let nmap = lab.exec(lab.client, [nmapPath!, "-sT", "-n", "-Pn", "-T4", "--min-rtt-timeout", "1500ms"] + family
                                    + ["-p", "1-1100,8080", "-oG", "-", host], timeout: 120)
                #expect(nmap.status == 0, "\(nmap.stderr)")
                let theirs = nmapStates(nmap.stdout, ports: ports)
                let differing = ports.filter { ours[$0] != theirs[$0] }
                #expect(differing.isEmpty, "\(host): portwatch and nmap differ on \(differing.prefix(20).map { "\($0): \(ours[$0] ?? "-") vs \(theirs[$0] ?? "-")" })")
            }
        }
    }

    /// A full-range scan of the namespace's loopback finds exactly the ports the test opened.
    @Test func loopbackFullRangeFindsExactlyTheOpenedPorts() throws {
        try withScanLab { lab in
            let server = try lab.startServer(["tcp:127.0.0.1:0", "tcp:127.0.0.1:0", "tcp:127.0.0.1:0"], in: lab.client)
            let scan = runPortwatch(["scan", "127.0.0.1", "-p", "1-65535", "--json"], timeout: 120, netns: lab.client)
            #expect(scan.status == 0, "\(scan)")
            let found = Set(portwatchStates(scan).filter { $0.value == "open" }.keys)
            #expect(found == Set(server.ports), "found \(found.sorted()), opened \(server.ports.sorted())")
            let target = scan.json()?.objects("targets").first
            #expect(target?.object("counts")?.int("closed") == 65535 - server.ports.count, "\(scan)")
            #expect(scan.json()?.bool("complete") == true)
        }
    }

    /// A /29 routed to the test host: the two addresses it holds answer (open and closed), the
    /// six it does not are silent (filtered), as nmap says.
    @Test func cidrBlockOfTheTestNetwork() throws {
        try withScanLab { lab in
            let n = lab.n
            lab.ip(["-n", lab.server, "addr", "add", "10.249.\(n).2/32", "dev", "lo"])
            lab.ip(["-n", lab.server, "addr", "add", "10.249.\(n).3/32", "dev", "lo"])
            lab.ip(["-n", lab.client, "route", "add", "10.249.\(n).0/29", "via", lab.serverV4])
            let block = "10.249.\(n).0/29"
            let scan = runPortwatch(["scan", block, "-p", "22,23", "--timeout", "300ms", "--show-closed", "--json"],
                                    timeout: 60, netns: lab.client)
            #expect(scan.status == 0, "\(scan)")
            let targets = scan.json()?.objects("targets") ?? []
            #expect(targets.map { $0.string("address") ?? "" } == (0..<8).map { "10.249.\(n).\($0)" })
            let nmap = lab.exec(lab.client, [nmapPath!, "-sT", "-n", "-Pn", "-T4", "-p", "22,23", "-oG", "-", block], timeout: 120)
            for (i, target) in targets.enumerated() {
                let ours = portwatchStates(scan, host: i)
                let address = target.string("address") ?? ""
                if i == 2 || i == 3 {
                    #expect(ours == [22: "open", 23: "closed"], "\(address): \(ours)")
                } else {
                    #expect(ours == [22: "filtered", 23: "filtered"], "\(address): \(ours)")
                }
                let hostLines = nmap.stdout.split(separator: "\n").filter { $0.hasPrefix("Host: \(address) ") }.joined(separator: "\n")
                #expect(nmapStates(hostLines, ports: [22, 23]) == ours, "\(address): nmap \(hostLines)")
            }
        }
    }

    /// UDP: an answer is open, ICMP port-unreachable closed, admin-prohibited filtered, silence
    /// (a quiet service or a drop) open|filtered — the same classification as nmap -sU.
    @Test func udpStatesMatchNmap() throws {
        try withScanLab(icmpRateLimit: 0) { lab in
            let ports: [UInt16] = [50, 51, 52, 53, 54, 122, 123, 124, 160, 161, 162, 5000, 6000, 7000]
            let scan = runPortwatch(["scan", "--udp", lab.serverV4, "-p", portList(ports), "--show-closed", "--json"],
                                    timeout: 60, netns: lab.client)
            #expect(scan.status == 0, "\(scan)")
            let ours = portwatchStates(scan)
            for port in ScanHost.udpEcho { #expect(ours[port] == "open", "\(port)") }
            #expect(ours[ScanHost.udpSilent] == "open|filtered")
            #expect(ours[ScanHost.udpDropped] == "open|filtered")
            #expect(ours[ScanHost.udpProhibited] == "filtered")
            for port in [50, 51, 52, 54, 122, 124, 160, 162] as [UInt16] { #expect(ours[port] == "closed", "\(port)") }
            let nmap = lab.exec(lab.client, [nmapPath!, "-sU", "-n", "-Pn", "-p", portList(ports), "-oG", "-", lab.serverV4], timeout: 300)
            let theirs = nmapStates(nmap.stdout, ports: ports)
            let differing = ports.filter { ours[$0] != theirs[$0] }
            #expect(differing.isEmpty, "differ: \(differing.map { "\($0): \(ours[$0] ?? "-") vs \(theirs[$0] ?? "-")" }) nmap: \(nmap.stdout)")
        }
    }

    /// With the kernel's default ICMP rate limit (one error a second per peer after a burst),
    /// closed ports are still closed, not open|filtered: the scan notices the limit and slows down.
    @Test func udpUnderTheKernelsICMPRateLimitDoesNotMisreport() throws {
        try withScanLab(icmpRateLimit: 1000) { lab in
            let scan = runPortwatch(["scan", "--udp", lab.serverV4, "-p", "40-55", "--show-closed", "--json"],
                                    timeout: 120, netns: lab.client)
            #expect(scan.status == 0, "\(scan)")
            let ours = portwatchStates(scan)
            #expect(ours[53] == "open")
            let closed = (40...55).filter { $0 != 53 }.map(UInt16.init)
            let wrong = closed.filter { ours[$0] != "closed" }
            #expect(wrong.isEmpty, "not closed: \(wrong.map { "\($0): \(ours[$0] ?? "-")" })")
            #expect(scan.json()?.objects("targets").first?.bool("icmp_rate_limited") == true, "\(scan)")
        }
    }
}

@Suite("scan: input", .blocking)
struct ScanInputTests {
    /// Bad targets, ports and options: one line on stderr, exit 2, before any probe is sent.
    @Test func badInputExitsTwo() {
        let cases: [[String]] = [
            ["scan"],
            ["scan", "10.0.0.0/8", "-p", "80"],
            ["scan", "10.0.0.0/15", "-p", "80"],
            ["scan", "fd00::/64", "-p", "80"],
            ["scan", "10.0.0.0/33", "-p", "80"],
            ["scan", "10.0.0.300/30"],
            ["scan", "127.0.0.1", "-p", "0"],
            ["scan", "127.0.0.1", "-p", "70000"],
            ["scan", "127.0.0.1", "--top", "0"],
            ["scan", "127.0.0.1", "--rate", "0"],
            ["scan", "127.0.0.1", "--concurrency", "0"],
            ["scan", "127.0.0.1", "--timeout", "0s"],
            ["scan", "127.0.0.1", "--open", "--show-closed"],
            ["scan", "127.0.0.1", "-p", "80", "--top", "10"],
            ["scan", "bad..host"],
        ]
        for args in cases {
            let r = runPortwatch(args)
            #expect(r.status == 2, "\(args): \(r)")
            #expect(r.stdout.isEmpty, "\(args): \(r)")
            #expect(r.stderr.hasPrefix("portwatch: ") && r.stderr.split(separator: "\n").count == 1, "\(args): \(r)")
        }
    }

    /// A loopback scan of a port this test listens on and one nobody holds: open (exit 0); the
    /// closed one alone exits 1; banners are read when the service speaks first.
    @Test func loopbackOpenAndClosedExitCodes() throws {
        let listener = try Net.tcpListenerOnFreePort()
        defer { listener.close() }
        let port = listener.port
        let closed = try Net.closedPort()
        let open = runPortwatch(["scan", "127.0.0.1", "-p", "\(port),\(closed)", "--show-closed", "--json"])
        #expect(open.status == 0, "\(open)")
        let states = portwatchStates(open)
        #expect(states == [port: "open", closed: "closed"], "\(open)")
        let none = runPortwatch(["scan", "127.0.0.1", "-p", "\(closed)"])
        #expect(none.status == 1, "\(none)")
    }
}

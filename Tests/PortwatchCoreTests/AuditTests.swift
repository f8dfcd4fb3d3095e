// The audit's decisions on values: reach of listeners, findings for risky services, drift
// against a baseline, the baseline file; and one real banner conversation over loopback.

import Foundation
import Testing
@testable import PortwatchCore
#if canImport(Glibc)
import Glibc
#endif

private func listener(_ address: String, _ port: UInt16, v6only: Bool? = nil) -> ListenerInfo {
    ListenerInfo(local: Endpoint(address: IPAddress(address)!, port: port), acceptQueue: 0, backlog: 128, inode: 1, uid: 0,
                 drops: 0, v6only: v6only)
}

private let host: [InterfaceAddress] = [
    InterfaceAddress(interface: "lo", address: IPAddress("127.0.0.1")!, loopback: true),
    InterfaceAddress(interface: "lo", address: IPAddress("::1")!, loopback: true),
    InterfaceAddress(interface: "eth0", address: IPAddress("192.0.2.10")!),
    InterfaceAddress(interface: "eth0", address: IPAddress("2001:db8::10")!),
    InterfaceAddress(interface: "wg0", address: IPAddress("10.8.0.1")!),
]

private func row(_ proto: TransportProtocol, _ port: UInt16, _ listeners: [ListenerInfo]) -> PortSummary {
    var s = PortSummary(proto: proto, port: port, role: .local)
    s.listeners = listeners
    return s
}

private func listenerView(_ summary: PortSummary, firewall: FirewallVerdict) -> AuditListener {
    AuditListener(summary: summary, reach: ListenerReach(listeners: summary.listeners, addresses: host), firewall: firewall,
                  firewallByFamily: [], executables: [], banner: nil, findings: [])
}

@Suite("audit: reach, findings, drift")
struct AuditTests {
    @Test func reachOfEachKindOfAddress() {
        let lo = ListenerReach(listeners: [listener("127.0.0.1", 1), listener("::1", 1)], addresses: host)
        #expect(lo.exposure == .loopback && lo.families == [.ipv4, .ipv6] && lo.interfaces == ["lo"])
        let one = ListenerReach(listeners: [listener("10.8.0.1", 1)], addresses: host)
        #expect(one.exposure == .address && one.families == [.ipv4] && one.interfaces == ["wg0"])
        let v4any = ListenerReach(listeners: [listener("0.0.0.0", 1)], addresses: host)
        #expect(v4any.exposure == .any && v4any.families == [.ipv4] && v4any.interfaces == ["eth0", "lo", "wg0"])
        // A dual-stack :: takes IPv4 too; a v6only one does not.
        let dual = ListenerReach(listeners: [listener("::", 1, v6only: false)], addresses: host)
        #expect(dual.exposure == .any && dual.families == [.ipv4, .ipv6] && dual.interfaces == ["eth0", "lo", "wg0"])
        let v6 = ListenerReach(listeners: [listener("::", 1, v6only: true)], addresses: host)
        #expect(v6.families == [.ipv6] && v6.interfaces == ["eth0", "lo"])
        // The widest listener of a port decides its exposure.
        let mixed = ListenerReach(listeners: [listener("127.0.0.1", 1), listener("192.0.2.10", 1)], addresses: host)
        #expect(mixed.exposure == .address && mixed.interfaces == ["eth0", "lo"])
    }

    @Test func riskyServiceFindings() {
        let open = FirewallVerdict(.accept, rule: "tcp dport 6379 accept (inet f input)")
        let wildcard = row(.tcp, 6379, [listener("0.0.0.0", 6379)])
        let byPort = serviceFinding(listenerView(wildcard, firewall: open), banner: nil)
        #expect(byPort?.severity == .high && byPort?.reason.contains("redis") == true)
        // The banner decides: a password-protected redis is a lesser problem.
        let pong = serviceFinding(listenerView(wildcard, firewall: open), banner: Array("+PONG\r\n".utf8))
        #expect(pong?.severity == .high && pong?.reason.contains("without a password") == true, "\(String(describing: pong))")
        let auth = serviceFinding(listenerView(wildcard, firewall: open),
                                  banner: Array("-NOAUTH Authentication required.\r\n".utf8))
        #expect(auth?.severity == .low, "\(String(describing: auth))")
        // Loopback only: not a finding.
        #expect(serviceFinding(listenerView(row(.tcp, 6379, [listener("127.0.0.1", 6379)]), firewall: open), banner: nil) == nil)
        // Blocked by the firewall: low, and says so.
        let blocked = serviceFinding(listenerView(wildcard, firewall: FirewallVerdict(.drop, rule: "policy drop (inet f input)")), banner: nil)
        #expect(blocked?.severity == .low && blocked?.reason.contains("firewall blocks") == true)
        // Not a risky port: nothing.
        #expect(serviceFinding(listenerView(row(.tcp, 8443, [listener("0.0.0.0", 8443)]), firewall: open), banner: nil) == nil)
        // snmp is risky over UDP only.
        #expect(serviceFinding(listenerView(row(.udp, 161, [listener("0.0.0.0", 161)]), firewall: open), banner: nil)?.severity == .medium)
        #expect(serviceFinding(listenerView(row(.tcp, 161, [listener("0.0.0.0", 161)]), firewall: open), banner: nil) == nil)
    }

    @Test func driftByExecutableNotPid() {
        let base = Baseline(listeners: [
            BaselineListener(proto: .tcp, port: 22, addresses: ["0.0.0.0"], executables: ["/usr/sbin/sshd"]),
            BaselineListener(proto: .tcp, port: 80, addresses: ["*"], executables: ["/usr/sbin/nginx"]),
            BaselineListener(proto: .udp, port: 53, addresses: ["127.0.0.53"], executables: ["/usr/lib/systemd/systemd-resolved"]),
            BaselineListener(proto: .tcp, port: 5432, addresses: ["127.0.0.1"], executables: ["/usr/lib/postgresql/15/bin/postgres"]),
        ])
        let now = [
            BaselineListener(proto: .tcp, port: 22, addresses: ["0.0.0.0"], executables: ["/usr/sbin/sshd"]),
            BaselineListener(proto: .tcp, port: 80, addresses: ["*"], executables: ["/tmp/x/nginx"]),
            // Owner not visible now: no evidence of a change.
            BaselineListener(proto: .tcp, port: 5432, addresses: ["127.0.0.1"], executables: []),
            BaselineListener(proto: .tcp, port: 4444, addresses: ["0.0.0.0"], executables: ["/tmp/nc"]),
        ]
        let d = Drift(baseline: base, current: now, source: "b.json")
        #expect(d.new.map(\.port) == [4444])
        #expect(d.gone.map(\.port) == [53] && d.gone.first?.proto == .udp)
        #expect(d.ownerChanged.count == 1 && d.ownerChanged.first?.port == 80 && d.ownerChanged.first?.after == ["/tmp/x/nginx"])
        #expect(Drift(baseline: base, current: base.listeners, source: "b.json").isEmpty)
    }

    @Test func baselineFileRoundTripAndBadFiles() throws {
        let base = Baseline(listeners: [BaselineListener(proto: .udp, port: 53, addresses: ["127.0.0.53"], executables: ["/x"])])
        let path = "/tmp/pw-baseline-\(getpid()).json"
        defer { unlink(path) }
        try base.save(to: path)
        #expect(try Baseline.load(path) == base)
        let text = try String(contentsOfFile: path, encoding: .utf8)
        #expect(text.contains("\"protocol\"") && text.contains("\"executables\""))
        for garbage in ["", "[]", "{\"version\": 1}", "{\"version\": 9, \"listeners\": []}", "\u{1}\u{2}"] {
            try garbage.write(toFile: path, atomically: true, encoding: .utf8)
            #expect(throws: PortwatchError.self) { try Baseline.load(path) }
        }
        #expect(throws: PortwatchError.self) { try Baseline.load("/nonexistent/pw-baseline.json") }
    }

    @Test func jsonReaderForNftOutput() {
        let v = JSONValue(parsing: Array(#" {"a": [1, -2, 3.5, "x\"y\u00e9\ud83d\ude00", true, false, null, {}]} "#.utf8))
        #expect(v == .object([("a", .array([.int(1), .int(-2), .double(3.5), .string("x\"yé😀"), .bool(true), .bool(false),
                                              .null, .object([])]))]))
        for bad in ["", "{", "[1,]", "{\"a\" 1}", "\"open", "[1] x", "tru", String(repeating: "[", count: 300)] {
            #expect(JSONValue(parsing: Array(bad.utf8)) == nil, "\(bad.prefix(20))")
        }
    }

    @Test func combinedVerdictIsTheMostOpenFamily() {
        let v = combine([(.ipv4, FirewallVerdict(.drop, rule: "a")), (.ipv6, FirewallVerdict(.accept, rule: "b"))])
        #expect(v.verdict == .accept && v.rule.contains("ipv4 drop") && v.rule.contains("ipv6 accept"))
        #expect(combine([(.ipv4, FirewallVerdict(.drop, rule: "a")), (.ipv6, FirewallVerdict(.drop, rule: "a"))]).rule == "a")
    }

    /// A real conversation on loopback: a redis-like server thread answers PING with +PONG.
    @Test func bannerFromALoopbackServer() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        #expect(fd >= 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        #expect(bound == 0 && listen(fd, 4) == 0)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        let port = UInt16(bigEndian: addr.sin_port)
        let server = Thread {
            let c = accept(fd, nil, nil)
            guard c >= 0 else { return }
            var buffer = [UInt8](repeating: 0, count: 64)
            let n = recv(c, &buffer, 64, 0)
            if n > 0, String(decoding: buffer[0..<n], as: UTF8.self).hasPrefix("PING") { _ = send(c, "+PONG\r\n", 7, 0) }
            close(c)
        }
        server.start()
        let banner = readBanner(IPAddress("127.0.0.1")!, port: port, request: Array("PING\r\n".utf8), timeout: 5)
        #expect(banner.map(bannerText) == "+PONG")
    }
}

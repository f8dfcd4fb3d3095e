import Foundation
import Testing
import PortwatchTestSupport
@testable import PortwatchCore

private let services = ServiceDatabase(parsing: """
    ssh 22/tcp
    domain 53/tcp
    domain 53/udp
    ntp 123/udp
    """)

@Suite("--tcp/--udp on a port spec, signals, --host values")
struct InputTests {
    @Test func udpFlagOnATCPOnlyService() throws {
        let ssh = try PortSpec(parsing: "ssh", services: services).restricted(to: [.udp])
        #expect(ssh.contains(port: 22, proto: .udp))
        #expect(!ssh.contains(port: 22, proto: .tcp))
        let domain = try PortSpec(parsing: "domain", services: services).restricted(to: [.udp])
        #expect(domain.ports(for: .udp) == [53] && domain.ports(for: .tcp).isEmpty)
    }

    @Test func typedSuffixAgainstTheFlagIsDropped() throws {
        let mixed = try PortSpec(parsing: "53/udp,80", services: services).restricted(to: [.tcp])
        #expect(mixed.protocols(default: [.tcp]) == [.tcp])
        #expect(mixed.ports(for: .tcp) == [80])
        #expect(!mixed.contains(port: 53, proto: .udp))
        #expect(throws: PortwatchError.self) { try PortSpec(parsing: "53/udp", services: services).restricted(to: [.tcp]) }
    }

    /// Every name and number `kill -l` prints is accepted and maps to the same number.
    @Test func everySignalKillKnows() throws {
        let r = Process()
        r.executableURL = URL(fileURLWithPath: "/bin/bash")
        r.arguments = ["-c", "kill -l"]
        let pipe = Pipe()
        r.standardOutput = pipe
        try r.run()
        r.waitUntilExit()
        let text = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        // "1) SIGHUP\t 2) SIGINT ..."
        let pairs = text.split(whereSeparator: { $0 == "\t" || $0 == "\n" }).compactMap { item -> (Int32, String)? in
            let parts = item.split(separator: ")")
            guard parts.count == 2, let n = Int32(parts[0].trimmingCharacters(in: .whitespaces)) else { return nil }
            return (n, parts[1].trimmingCharacters(in: .whitespaces))
        }
        #expect(pairs.count >= 60, "\(text)")
        for (n, name) in pairs {
            let parsed = try SignalName(parsing: name)
            #expect(parsed.number == n, "\(name)")
            #expect("SIG" + parsed.name == name)
            #expect(try SignalName(parsing: String(n)).number == n)
            #expect(try SignalName(parsing: name.lowercased()).number == n)
        }
        #expect(SignalName.all.count == pairs.count)
        #expect(try SignalName(parsing: "POLL").number == 29)
        for bad in ["FOO", "0", "65", "RTMIN+31", "RTMAX-31", "", "SIG", "-9"] {
            #expect(throws: PortwatchError.self) { try SignalName(parsing: bad) }
        }
    }

    @Test func hostOptionWithOrWithoutPort() throws {
        #expect(try HostPort.parseHostOption("[fd99::2]:50070") == HostPort(host: "fd99::2", port: 50070))
        #expect(try HostPort.parseHostOption("example.com:80") == HostPort(host: "example.com", port: 80))
        #expect(try HostPort.parseHostOption("10.0.0.1:22") == HostPort(host: "10.0.0.1", port: 22))
        #expect(try HostPort.parseHostOption("fd99::2") == HostPort(host: "fd99::2"))
        #expect(try HostPort.parseHostOption("[fd99::2]") == HostPort(host: "fd99::2"))
        #expect(try HostPort.parseHostOption("fe80::1%lo") == HostPort(host: "fe80::1%lo"))
        #expect(throws: PortwatchError.self) { try HostPort.parseHostOption("[fd99::2]:") }
        #expect(throws: PortwatchError.self) { try HostPort.parseHostOption("[fd99::2") }
    }

    @Test func zonesResolveToInterfaces() throws {
        let lo = try resolveHost("fe80::1%lo")
        #expect(lo.count == 1 && lo[0].scopeID == if_nametoindex("lo") && lo[0].description == "fe80::1%lo")
        #expect(throws: PortwatchError.self) { try resolveHost("fe80::1%nosuchif0") }
        #expect(throws: PortwatchError.self) { try resolveHost("fe80::1") }
    }
}

@Suite("remote verdicts on loopback", .blocking)
struct RemoteRuleTests {
    /// One address accepts, the other refuses: the host is open, and both answers are kept.
    @Test func anyOpenAddressMakesTheHostOpen() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var sin = sockaddr_in()
        sin.sin_family = sa_family_t(AF_INET)
        sin.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        try #require(withUnsafePointer(to: &sin) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } } == 0)
        try #require(listen(fd, 8) == 0)
        withUnsafeMutablePointer(to: &sin) { p in _ = p.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        let port = UInt16(bigEndian: sin.sin_port)
        // ::1 has nothing on this port (the listener is IPv4 only): refused.
        let check = try checkRemote(host: "both", addresses: [RemoteAddress(IPAddress("::1")!), RemoteAddress(IPAddress("127.0.0.1")!)],
                                    proto: .tcp, port: port, timeout: 2)
        #expect(check.state == .open)
        #expect(check.decisive.address.description == "127.0.0.1")
        #expect(check.attempts.map(\.state).contains(.open))
        // Only the refusing address: closed.
        let refused = try checkRemote(host: "v6", addresses: [RemoteAddress(IPAddress("::1")!)], proto: .tcp, port: port, timeout: 2)
        #expect(refused.state == .closed && refused.decisive.reason == "refused")
    }

    /// Refused beats no answer; a UDP port with nothing bound answers ICMP port-unreachable.
    @Test func udpRefusalIsClosed() throws {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        var sin = sockaddr_in()
        sin.sin_family = sa_family_t(AF_INET)
        sin.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafePointer(to: &sin) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
        withUnsafeMutablePointer(to: &sin) { p in _ = p.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        let port = UInt16(bigEndian: sin.sin_port)
        // Bound and silent: open|filtered.
        let silent = try checkRemote(host: "h", addresses: [RemoteAddress(IPAddress("127.0.0.1")!)], proto: .udp, port: port, timeout: 0.3)
        #expect(silent.state == .openFiltered)
        close(fd)
        let closed = try checkRemote(host: "h", addresses: [RemoteAddress(IPAddress("127.0.0.1")!)], proto: .udp, port: port, timeout: 2)
        #expect(closed.state == .closed)
    }
}

import Glibc
import Testing
@testable import PortwatchCore

// Dual-stack and IPv6-only listeners, wildcards and link-local zones, as ss shows them.

/// A TCP listener on `::` of the test process, dual-stack or IPv6-only; port from the kernel.
private func listenOnAnyV6(v6only: Bool) throws -> (fd: Int32, port: UInt16) {
    let fd = socket(AF_INET6, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    try #require(fd >= 0)
    var flag: Int32 = v6only ? 1 : 0
    try #require(setsockopt(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &flag, socklen_t(MemoryLayout<Int32>.size)) == 0)
    var address = sockaddr_in6()
    address.sin6_family = sa_family_t(AF_INET6)
    var length = socklen_t(MemoryLayout<sockaddr_in6>.size)
    let ok = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            bind(fd, $0, length) == 0 && listen(fd, 4) == 0 && getsockname(fd, $0, &length) == 0
        }
    }
    try #require(ok)
    return (fd, UInt16(bigEndian: address.sin6_port))
}

@Test func dualStackAndV6OnlyListenersAreTold() throws {
    let dual = try listenOnAnyV6(v6only: false)
    let only6 = try listenOnAnyV6(v6only: true)
    defer { close(dual.fd); close(only6.fd) }
    let ports = [dual.port...dual.port, only6.port...only6.port]
    var query = SocketQuery(protocols: [.tcp], withCounters: false)
    query.ports = [.tcp: PortFilter(local: ports)]

    let all = try SockDiagSource().sockets(query)
    let dualRecord = try #require(all.first { $0.local.port == dual.port && $0.state == .listen })
    let onlyRecord = try #require(all.first { $0.local.port == only6.port && $0.state == .listen })
    #expect(dualRecord.v6only == false)
    #expect(onlyRecord.v6only == true)
    #expect(dualRecord.local.listenText(v6only: dualRecord.v6only) == "*:\(dual.port)")
    #expect(onlyRecord.local.listenText(v6only: onlyRecord.v6only) == "[::]:\(only6.port)")

    // The rows show the difference too (and in JSON, "v6only").
    let rows = summarizePorts(all, includeOutgoing: false)
    #expect(rows.first { $0.port == dual.port }?.addresses == ["*"])
    #expect(rows.first { $0.port == only6.port }?.addresses == ["[::]"])
    #expect(rows.first { $0.port == dual.port }?.listeners.first?.v6only == false)

    // IPv4 only (`-4`) keeps the dual-stack listener, which accepts IPv4, and drops the other.
    query.families = [.inet]
    let v4 = try SockDiagSource().sockets(query)
    // (By socket: other processes' IPv4 sockets may share these port numbers.)
    #expect(v4.contains { $0.cookie == dualRecord.cookie })
    #expect(!v4.contains { $0.cookie == onlyRecord.cookie })
    #expect(v4.allSatisfy { !$0.local.address.isV6 || $0.local.address.mappedV4 != nil || $0.v6only == false })
}

@Test func wildcardsAreWrittenAsSsWritesThem() {
    let anyV4 = Endpoint(address: .anyV4, port: 80)
    #expect(anyV4.description == "0.0.0.0:80")
    #expect(anyV4.listenText(v6only: nil) == "0.0.0.0:80")
    let anyV6 = Endpoint(address: .anyV6, port: 80)
    #expect(anyV6.listenText(v6only: false) == "*:80")
    #expect(anyV6.listenText(v6only: true) == "[::]:80")
    #expect(anyV6.listenAddressText(v6only: nil) == "::")
    #expect(Endpoint(address: IPAddress("::1")!, port: 5).description == "[::1]:5")
}

/// A link-local listener as sock_diag reports it (fe80::1 on ifindex 1, `lo`): its zone stays.
@Test func linkLocalAddressesKeepTheirZone() throws {
    var message: [UInt8] = []
    func put16(_ v: UInt16) { withUnsafeBytes(of: v.littleEndian) { message.append(contentsOf: $0) } }
    func put32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { message.append(contentsOf: $0) } }
    put32(16 + 72 + 8); put16(20); put16(2); put32(1); put32(0)  // nlmsghdr: SOCK_DIAG_BY_FAMILY, NLM_F_MULTI
    message += [10, 10, 0, 0]                                      // AF_INET6, LISTEN, timer, retrans
    message += [0x1f, 0x90, 0, 0]                                  // sport 8080, dport 0
    message += [0xfe, 0x80] + [UInt8](repeating: 0, count: 13) + [1]  // src fe80::1
    message += [UInt8](repeating: 0, count: 16)                    // dst ::
    put32(1)                                                       // ifindex 1
    put32(7); put32(0)                                             // cookie
    put32(0); put32(0); put32(0); put32(128); put32(4242)          // expires, rqueue, wqueue, uid, inode
    put16(5); put16(11); message += [1, 0, 0, 0]                   // INET_DIAG_SKV6ONLY = 1
    var records: [SocketRecord] = []
    _ = try message.withUnsafeBytes { try parseInetDiagDatagram($0, proto: .tcp, into: &records) }
    let record = try #require(records.first)
    #expect(record.local.scope == 1)
    #expect(record.v6only == true)
    let lo = interfaceName(1)
    #expect(record.local.description == "[fe80::1%\(lo)]:8080")
    #expect(record.local.addressText == "fe80::1%\(lo)")
    #expect(summarizePorts(records, includeOutgoing: false).first?.addresses == ["fe80::1%\(lo)"])
    // A global address has no zone even when the message names an interface.
    #expect(Endpoint(address: IPAddress("2001:db8::1")!, port: 1).addressText == "2001:db8::1")
}

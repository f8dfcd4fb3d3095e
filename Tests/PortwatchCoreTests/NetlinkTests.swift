import Testing
import Foundation
@testable import PortwatchCore

/// Reads a fixture of recorded sock_diag reply datagrams: [u32 length][bytes]...
func recordedDatagrams(_ name: String) throws -> [[UInt8]] {
    let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/\(name)")
    let data = try Data(contentsOf: url)
    var out: [[UInt8]] = []
    var offset = 0
    let bytes = [UInt8](data)
    while offset + 4 <= bytes.count {
        let n = Int(bytes[offset]) | Int(bytes[offset + 1]) << 8 | Int(bytes[offset + 2]) << 16 | Int(bytes[offset + 3]) << 24
        offset += 4
        out.append(Array(bytes[offset..<min(bytes.count, offset + n)]))
        offset += n
    }
    return out
}

/// Replays datagrams through the parser the way the collector does: one dump per NLMSG_DONE,
/// in the order tcp/inet, tcp/inet6, udp/inet, udp/inet6.
func replay(_ datagrams: [[UInt8]]) throws -> [SocketRecord] {
    let order: [TransportProtocol] = [.tcp, .tcp, .udp, .udp]
    var dump = 0
    var records: [SocketRecord] = []
    for datagram in datagrams {
        let progress = try datagram.withUnsafeBytes { raw in
            try parseInetDiagDatagram(raw, proto: order[min(dump, 3)], into: &records)
        }
        if progress == .done { dump += 1 }
    }
    return records
}

@Suite struct RecordedSockDiagReplies {
    // Recorded from `portwatch connections 47001,47002` with PORTWATCH_RECORD_NETLINK set, while
    // a process held: a TCP listener on 127.0.0.1:47001 (backlog 7) with two connections (client
    // 35516 sent 3000 bytes; the server sent 500 bytes to client 35526), and UDP on [::1]:47002.
    @Test func parsesEveryConnectionWithItsCounters() throws {
        let records = try replay(try recordedDatagrams("sockdiag-47001-47002.bin"))
        let tcp = records.filter { $0.proto == .tcp }
        #expect(tcp.count == 4)
        #expect(tcp.allSatisfy { $0.state == .established && $0.local.address == IPAddress("127.0.0.1") })
        let serverFromFirst = try #require(tcp.first { $0.local.port == 47001 && $0.peer.port == 35516 })
        #expect(serverFromFirst.payloadReceived == 3000)
        #expect(serverFromFirst.tcp?.bytesReceived == 3000)
        let firstClient = try #require(tcp.first { $0.local.port == 35516 })
        #expect(firstClient.payloadSent == 3000)
        // bytes_acked counts the SYN: the payload is one less.
        #expect(firstClient.tcp?.bytesAcked == 3001)
        let secondClient = try #require(tcp.first { $0.local.port == 35526 })
        #expect(secondClient.payloadReceived == 500)
        #expect(Set(tcp.map(\.cookie)).count == 4)
        #expect(tcp.allSatisfy { $0.inode != 0 && $0.tcp != nil && $0.drops == 0 })
    }

    @Test func aggregatesToOnePortWithTrafficAndOutgoingRows() throws {
        let records = try replay(try recordedDatagrams("sockdiag-47001-47002.bin"))
        // The recording was filtered to connections, so there is no listener: the server side
        // is recognised by its non-ephemeral port talking to ephemeral peers (47001 was in this
        // machine's ephemeral range when recorded, so the test narrows the range to exclude it).
        let ports = summarizePorts(records, includeOutgoing: true, ephemeral: EphemeralRange(32768...46999))
        let local = try #require(ports.first { $0.role == .local && $0.port == 47001 })
        #expect(local.connections.established == 2)
        #expect(local.traffic.bytesReceived == 3000)
        #expect(local.traffic.bytesSent == 500)
        let remote = try #require(ports.first { $0.role == .remote && $0.port == 47001 })
        #expect(remote.connections.established == 2)
        #expect(remote.traffic.bytesSent == 3000)
        #expect(remote.traffic.bytesReceived == 500)
    }

    @Test func truncatedRepliesAreErrorsNotCrashes() throws {
        let datagrams = try recordedDatagrams("sockdiag-47001-47002.bin")
        let first = try #require(datagrams.first { $0.count > 100 })
        // Every prefix of a real datagram either parses what is whole or reports truncation.
        for cut in stride(from: 1, to: first.count, by: 7) {
            var records: [SocketRecord] = []
            let prefix = Array(first[0..<cut])
            do {
                _ = try prefix.withUnsafeBytes { try parseInetDiagDatagram($0, proto: .tcp, into: &records) }
            } catch let error as NetlinkError {
                guard case .truncated = error else {
                    Issue.record("unexpected error \(error) at cut \(cut)")
                    continue
                }
            }
        }
        // A header claiming more than the datagram holds.
        var lying = first
        lying[0] = 0xff
        lying[1] = 0xff
        #expect(throws: NetlinkError.self) {
            var records: [SocketRecord] = []
            _ = try lying.withUnsafeBytes { try parseInetDiagDatagram($0, proto: .tcp, into: &records) }
        }
    }

    @Test func kernelErrorsAreReported() throws {
        // nlmsghdr(len 36, NLMSG_ERROR) + errno -EINVAL + the echoed request header.
        var message: [UInt8] = [36, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]
        withUnsafeBytes(of: Int32(-22).littleEndian) { message.append(contentsOf: $0) }
        message.append(contentsOf: [UInt8](repeating: 0, count: 16))
        var records: [SocketRecord] = []
        #expect(throws: NetlinkError.kernel(errno: 22)) {
            _ = try message.withUnsafeBytes { try parseInetDiagDatagram($0, proto: .tcp, into: &records) }
        }
    }
}

@Suite struct Bytecode {
    /// Runs bytecode the way the kernel's inet_diag_bc_run does, to check our jumps.
    func run(_ bc: [UInt8], sport: UInt16, dport: UInt16) -> Bool {
        var pc = 0
        var len = bc.count
        while len > 0 {
            let code = bc[pc]
            let yes = Int(bc[pc + 1])
            let no = Int(bc[pc + 2]) | Int(bc[pc + 3]) << 8
            var matched = true
            func port() -> UInt16 { UInt16(bc[pc + 6]) | UInt16(bc[pc + 7]) << 8 }
            switch code {
            case 1: matched = false  // JMP
            case 2: matched = sport >= port()
            case 3: matched = sport <= port()
            case 4: matched = dport >= port()
            case 5: matched = dport <= port()
            default: Issue.record("unexpected op \(code)")
            }
            let step = matched ? yes : no
            pc += step
            len -= step
        }
        return len == 0
    }

    @Test func orOfRangesMatchesExactlyTheRanges() throws {
        let filter = PortFilter(local: [22...22, 8000...8100], peer: [443...443])
        let bc = try #require(compilePortFilter(filter))
        #expect(bc.count == 60)
        for port: UInt16 in [1, 21, 22, 23, 7999, 8000, 8050, 8100, 8101, 65535] {
            let inRange: Bool = (8000...8100).contains(port)
            let expected: Bool = port == 22 || inRange
            #expect(run(bc, sport: port, dport: 1) == expected, "sport \(port)")
        }
        #expect(run(bc, sport: 1, dport: 443))
        #expect(!run(bc, sport: 1, dport: 444))
    }

    @Test func kernelAcceptsTheBytecodeAndFiltersBySourcePort() throws {
        // The real kernel audits the bytecode: a malformed program is refused with EINVAL.
        let source = SockDiagSource()
        let filtered = try source.sockets(SocketQuery(ports: [.tcp: PortFilter(local: [1...1, 3...4, 65535...65535])]))
        #expect(filtered.allSatisfy { [1, 3, 4, 65535].contains($0.local.port) })
    }

    @Test func hugeFiltersFallBackToUserSpace() {
        var many: [ClosedRange<UInt16>] = []
        for i in 0..<5000 {
            let port = UInt16(i * 2 + 1)
            many.append(port...port)
        }
        #expect(compilePortFilter(PortFilter(local: many)) == nil)
    }
}

@Suite struct ProcNetFallback {
    static let tcp = """
      sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
       0: 0100007F:1F90 00000000:0000 0A 00000000:00000002 00:00000000 00000000     0        0 12345 1 0000000000000000 100 0 0 10 0
       1: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000  1000        0 12346 1 0000000000000000 20 4 30 10 -1
       2: garbage line
    """
    static let udp6 = """
      sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
     1234: 00000000000000000000000001000000:0035 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000   101        0 777 2 0000000000000000 42
    """

    @Test func parsesTCPv4Lines() {
        let records = parseProcNet(Self.tcp, proto: .tcp)
        #expect(records.count == 2)
        #expect(records[0].state == .listen)
        #expect(records[0].local == Endpoint(address: IPAddress("127.0.0.1")!, port: 8080))
        #expect(records[0].receiveQueue == 2)
        #expect(records[1].state == .established)
        #expect(records[1].peer.port == 0xD431)
        #expect(records[1].uid == 1000)
        #expect(records[1].inode == 12346)
    }

    @Test func parsesUDPv6WithDrops() {
        let records = parseProcNet(Self.udp6, proto: .udp)
        #expect(records.count == 1)
        #expect(records[0].local == Endpoint(address: IPAddress("::1")!, port: 53))
        #expect(records[0].isListening)
        #expect(records[0].drops == 42)
    }
}

/// A TCP listener of the test process on a loopback address (port chosen by the kernel).
private func listenOn(_ address: String) throws -> (fd: Int32, port: UInt16) {
    let v6 = address.contains(":")
    let fd = socket(v6 ? AF_INET6 : AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    try #require(fd >= 0)
    var storage = sockaddr_storage()
    var length: socklen_t
    if v6 {
        var sin6 = sockaddr_in6()
        sin6.sin6_family = sa_family_t(AF_INET6)
        _ = inet_pton(AF_INET6, address, &sin6.sin6_addr)
        withUnsafeMutableBytes(of: &storage) { raw in withUnsafeBytes(of: sin6) { raw.copyMemory(from: $0) } }
        length = socklen_t(MemoryLayout<sockaddr_in6>.size)
    } else {
        var sin = sockaddr_in()
        sin.sin_family = sa_family_t(AF_INET)
        _ = inet_pton(AF_INET, address, &sin.sin_addr)
        withUnsafeMutableBytes(of: &storage) { raw in withUnsafeBytes(of: sin) { raw.copyMemory(from: $0) } }
        length = socklen_t(MemoryLayout<sockaddr_in>.size)
    }
    let rc = withUnsafeMutablePointer(to: &storage) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && listen(fd, 3) == 0 && getsockname(fd, $0, &length) == 0 }
    }
    try #require(rc)
    let port = withUnsafeBytes(of: storage) { raw in UInt16(bigEndian: raw.loadUnaligned(fromByteOffset: 2, as: UInt16.self)) }
    return (fd, port)
}

@Suite(.serialized) struct OneWalkTCPRequest {
    @Test func oneWalkAndPerFamilyDumpsAgree() throws {
        let v4 = try listenOn("127.0.0.1")
        let v6 = try listenOn("::1")
        defer { close(v4.fd); close(v6.fd) }
        let query = SocketQuery(protocols: [.tcp], ports: [.tcp: PortFilter(local: [v4.port...v4.port, v6.port...v6.port])])
        let oneWalk = try SockDiagSource().sockets(query)
        let perFamily = try SockDiagSource(oneWalkTCP: false).sockets(query)
        #expect(Set(oneWalk.map(\.cookie)) == Set(perFamily.map(\.cookie)))
        #expect(oneWalk.contains { $0.local == Endpoint(address: IPAddress("127.0.0.1")!, port: v4.port) && $0.state == .listen })
        #expect(oneWalk.contains { $0.local == Endpoint(address: IPAddress("::1")!, port: v6.port) && $0.state == .listen })
    }
}

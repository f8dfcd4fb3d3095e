import Testing
@testable import PortwatchCore

@Suite("scan: model")
struct ScanModelTests {
    /// A CIDR block starts at its network address and holds 2^(width - prefix) addresses.
    @Test func cidrBlocks() throws {
        let v4 = try AddressBlock(parsing: "10.1.2.77/29")
        #expect(v4.base == IPAddress("10.1.2.72"))
        #expect(v4.count == 8)
        #expect(v4.addresses.map(\.description) == (72...79).map { "10.1.2.\($0)" })
        let single = try AddressBlock(parsing: "192.0.2.1/32")
        #expect(single.addresses == [IPAddress("192.0.2.1")!])
        let v6 = try AddressBlock(parsing: "fd00::1:ff/126")
        #expect(v6.addresses.map(\.description) == ["fd00::1:fc", "fd00::1:fd", "fd00::1:fe", "fd00::1:ff"])
        #expect(try AddressBlock(parsing: "10.0.0.0/0").count == 1 << 32)
        #expect(try AddressBlock(parsing: "fd00::/64").count == Int.max)
        for bad in ["10.0.0.0/33", "10.0.0.0/", "10.0.0.0/-1", "fd00::/129", "nohost/24", "10.0.0.0/2a"] {
            #expect(throws: PortwatchError.self, "\(bad)") { try AddressBlock(parsing: bad) }
        }
    }

    /// More than 65,536 addresses in all is refused before anything is resolved or sent.
    @Test func addressLimit() throws {
        #expect(try scanTargets(["10.0.0.0/16"]).count == 65_536)
        #expect(throws: PortwatchError.self) { try scanTargets(["10.0.0.0/15"]) }
        #expect(throws: PortwatchError.self) { try scanTargets(["10.0.0.0/16", "10.1.0.0/31"]) }
        #expect(throws: PortwatchError.self) { try scanTargets([]) }
        let literal = try scanTargets(["::1", "127.0.0.1", "127.0.0.1"])
        #expect(literal.map(\.host) == ["::1", "127.0.0.1"])
    }

    /// nmap-services lines rank by frequency, per protocol; ties go to the lower port.
    @Test func frequencyRanking() {
        let table = """
            # comment
            http\t80/tcp\t0.484143\t# World Wide Web HTTP
            ssh\t22/tcp\t0.182286\t# Secure Shell
            domain\t53/udp\t0.213496
            unknown\t7/tcp\t0.182286
            broken\tx/tcp\t0.5
            """
        #expect(ScanPorts.rankByFrequency(table, proto: .tcp) == [80, 7, 22])
        #expect(ScanPorts.rankByFrequency(table, proto: .udp) == [53])
        let fallback = ScanPorts.topPorts(5, proto: .tcp, files: [])
        #expect(fallback.ports == [21, 22, 25, 80, 443])
        #expect(fallback.source == "built-in ranking")
        #expect(ScanPorts.topPorts(65535, proto: .udp, files: []).ports.count == 65535)
    }

    /// The default list is 1-1024 plus every named port.
    @Test func defaultPorts() {
        let services = ServiceDatabase(parsing: "http-alt 8080/tcp\nfoo 40000/udp\nhttp 80/tcp\n")
        let tcp = ScanPorts.defaultPorts(proto: .tcp, services: services)
        #expect(tcp == Array(1...1024) + [8080])
        #expect(ScanPorts.defaultPorts(proto: .udp, services: services).last == 40000)
    }

    /// ICMP type/code from the error queue: port-unreachable is closed, admin-prohibited filtered.
    @Test func icmpClassification() {
        #expect(classifyICMP(origin: 2, type: 3, code: 3).0 == .closed)
        #expect(classifyICMP(origin: 3, type: 1, code: 4).0 == .closed)
        for code: UInt8 in [9, 10, 13] { #expect(classifyICMP(origin: 2, type: 3, code: code) == (.filtered, .icmpAdminProhibited)) }
        #expect(classifyICMP(origin: 3, type: 1, code: 1) == (.filtered, .icmpAdminProhibited))
        #expect(classifyICMP(origin: 2, type: 3, code: 1).0 == .filtered)
    }

    /// The SNMP request is well-formed BER: each length covers exactly what follows it.
    @Test func udpPayloads() {
        let snmp = udpPayload(port: 161)
        #expect(snmp.first == 0x30 && Int(snmp[1]) == snmp.count - 2)
        #expect(Array(snmp[5..<13]) == [0x04, 0x06] + Array("public".utf8))
        #expect(udpPayload(port: 123).count == 48 && udpPayload(port: 123)[0] & 0x07 == 3)
        let dns = udpPayload(port: 53)
        #expect(dns.count == 17 && dns[5] == 1)
        #expect(udpPayload(port: 9999).isEmpty)
    }

    /// Banners keep the first line, printable ASCII only.
    @Test func banners() {
        #expect(bannerText(ArraySlice(Array("SSH-2.0-OpenSSH_9.2\r\nrest".utf8))) == "SSH-2.0-OpenSSH_9.2")
        #expect(bannerText(ArraySlice([0x0d, 0x0a, 0x41, 0x00, 0x42])) == "A.B")
        #expect(bannerText(ArraySlice([0x0d, 0x0a])) == nil)
    }

    /// The adaptive timeout follows the measured round trip, between its floor and the cap.
    @Test func rttEstimator() {
        var e = RTTEstimator(maximum: 2)
        #expect(e.timeout == 1)
        for _ in 0..<50 { e.add(0.0001) }
        #expect(e.timeout == 0.1)
        for _ in 0..<50 { e.add(0.3) }
        #expect(e.timeout > 0.3 && e.timeout < 0.5)
        for _ in 0..<50 { e.add(5) }
        #expect(e.timeout == 2)
    }

    /// Deadlines come out of the heap in time order.
    @Test func deadlineHeap() {
        var heap = DeadlineHeap()
        let times = [5.0, 1, 4, 2, 3, 0.5, 9]
        for (i, t) in times.enumerated() { heap.push(.init(time: t, slot: Int32(i), generation: 0)) }
        var out: [Double] = []
        while let e = heap.pop() { out.append(e.time) }
        #expect(out == times.sorted())
    }
}

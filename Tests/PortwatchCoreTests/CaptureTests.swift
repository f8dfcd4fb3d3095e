import Glibc
import Testing
import PortwatchTestSupport
@testable import PortwatchCore

// MARK: - Hand-built packets (network header first, as AF_PACKET SOCK_DGRAM delivers them)

private func be16(_ v: UInt16) -> [UInt8] { [UInt8(v >> 8), UInt8(v & 0xff)] }
private func be32(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8((v >> 16) & 0xff), UInt8((v >> 8) & 0xff), UInt8(v & 0xff)] }
private func addr(_ text: String) -> IPAddress { IPAddress(text)! }

/// An IPv4 header (+ `options` bytes) around `payload`; `totalLength` overrides the length field.
private func ipv4(_ src: String, _ dst: String, proto: UInt8, payload: [UInt8], options: Int = 0,
                  moreFragments: Bool = false, fragmentOffset: UInt16 = 0, totalLength: Int? = nil) -> [UInt8] {
    let headerLength = 20 + options
    var h: [UInt8] = [0x40 | UInt8(headerLength / 4), 0]
    h += be16(UInt16(totalLength ?? headerLength + payload.count))
    h += be16(0x1234)
    h += be16((moreFragments ? 0x2000 : 0) | fragmentOffset)
    h += [64, proto, 0, 0]
    h += addr(src).bytes + addr(dst).bytes
    h += [UInt8](repeating: 1, count: options)  // NOPs
    return h + payload
}

private func ipv6(_ src: String, _ dst: String, next: UInt8, payload: [UInt8], payloadLength: Int? = nil) -> [UInt8] {
    var h: [UInt8] = [0x60, 0, 0, 0]
    h += be16(UInt16(payloadLength ?? payload.count))
    h += [next, 64]
    h += addr(src).bytes + addr(dst).bytes
    return h + payload
}

private func udp(_ sport: UInt16, _ dport: UInt16, payload: Int, lengthField: Int? = nil) -> [UInt8] {
    be16(sport) + be16(dport) + be16(UInt16(lengthField ?? payload + 8)) + [0, 0] + [UInt8](repeating: 0xab, count: payload)
}

private func tcp(_ sport: UInt16, _ dport: UInt16, flags: TCPFlags, seq: UInt32 = 0, ack: UInt32 = 0) -> [UInt8] {
    be16(sport) + be16(dport) + be32(seq) + be32(ack) + [5 << 4, flags.rawValue] + be16(65535) + [0, 0, 0, 0]
}

/// An ICMP (v4) or ICMPv6 error header followed by the quoted packet.
private func icmp(type: UInt8, code: UInt8, quoting quoted: [UInt8]) -> [UInt8] {
    [type, code, 0, 0, 0, 0, 0, 0] + quoted
}

private func parse(_ bytes: [UInt8]) -> CapturedPacket? {
    bytes.withUnsafeBytes { parseFrame($0) }
}

private func endpoint(_ a: String, _ p: UInt16) -> Endpoint { Endpoint(address: addr(a), port: p) }

// MARK: - Parser

@Suite struct CaptureParserTests {
    @Test func ipv4UDPUsesTheLengthFieldNotTheCapturedLength() {
        let frame = ipv4("10.0.0.2", "10.0.0.1", proto: 17, payload: udp(40000, 53, payload: 100))
        let expected = CapturedPacket.udp(source: endpoint("10.0.0.2", 40000), destination: endpoint("10.0.0.1", 53), payloadBytes: 100)
        #expect(parse(frame) == expected)
        // Cut to the snap length (headers only): the byte count still comes from the header.
        #expect(parse(Array(frame.prefix(28))) == expected)
        #expect(parse(Array(frame.prefix(27))) == nil)
    }

    @Test func ipv4OptionsMoveTheTransportHeader() {
        let frame = ipv4("10.0.0.2", "10.0.0.1", proto: 17, payload: udp(1, 2, payload: 5), options: 12)
        #expect(parse(frame) == .udp(source: endpoint("10.0.0.2", 1), destination: endpoint("10.0.0.1", 2), payloadBytes: 5))
    }

    @Test func fragments() {
        // The first fragment carries the UDP header, whose length covers the whole datagram.
        let first = ipv4("10.0.0.2", "10.0.0.1", proto: 17, payload: udp(5000, 6000, payload: 1472, lengthField: 3008), moreFragments: true)
        #expect(parse(first) == .udp(source: endpoint("10.0.0.2", 5000), destination: endpoint("10.0.0.1", 6000), payloadBytes: 3000))
        // Later fragments have no header: ignored (their bytes were counted with the first).
        let later = ipv4("10.0.0.2", "10.0.0.1", proto: 17, payload: [UInt8](repeating: 7, count: 100), fragmentOffset: 185)
        #expect(parse(later) == nil)
        let laterWithMore = ipv4("10.0.0.2", "10.0.0.1", proto: 17, payload: udp(1, 2, payload: 10), moreFragments: true, fragmentOffset: 1)
        #expect(parse(laterWithMore) == nil)
    }

    @Test func ipv6UDP() {
        let frame = ipv6("::1", "2001:db8::5", next: 17, payload: udp(7, 8, payload: 1200))
        #expect(parse(frame) == .udp(source: endpoint("::1", 7), destination: endpoint("2001:db8::5", 8), payloadBytes: 1200))
        #expect(parse(Array(frame.prefix(48))) != nil)
        #expect(parse(Array(frame.prefix(47))) == nil)
        #expect(parse(Array(frame.prefix(39))) == nil)
    }

    @Test func tcpSynAndReset() {
        let syn = ipv4("192.0.2.9", "10.0.0.1", proto: 6, payload: tcp(51000, 22, flags: .syn, seq: 777))
        #expect(parse(syn) == .tcp(source: endpoint("192.0.2.9", 51000), destination: endpoint("10.0.0.1", 22),
                                   flags: .syn, sequence: 777, acknowledgment: 0))
        let rst = ipv6("::1", "::1", next: 6, payload: tcp(9, 51000, flags: [.rst, .ack], seq: 0, ack: 778))
        #expect(parse(rst) == .tcp(source: endpoint("::1", 9), destination: endpoint("::1", 51000),
                                   flags: [.rst, .ack], sequence: 0, acknowledgment: 778))
        // A TCP header too short to hold the flags, or with a data offset below 5: ignored.
        #expect(parse(Array(syn.prefix(20 + 13))) == nil)
        var badOffset = syn
        badOffset[20 + 12] = 4 << 4
        #expect(parse(badOffset) == nil)
    }

    @Test func icmpPortUnreachableNamesTheClosedPortAndTheSender() {
        // We (10.0.0.1) tell 192.0.2.9 that UDP port 161 is closed, quoting its datagram.
        let quoted = ipv4("192.0.2.9", "10.0.0.1", proto: 17, payload: udp(40001, 161, payload: 30))
        let frame = ipv4("10.0.0.1", "192.0.2.9", proto: 1, payload: icmp(type: 3, code: 3, quoting: Array(quoted.prefix(28))))
        let expected = CapturedPacket.portUnreachable(
            proto: .udp, original: FlowEnds(source: endpoint("192.0.2.9", 40001), destination: endpoint("10.0.0.1", 161)),
            reporter: addr("10.0.0.1"))
        #expect(parse(frame) == expected)
        // Quoting only the ports (4 bytes) is enough; 3 bytes is not.
        #expect(parse(ipv4("10.0.0.1", "192.0.2.9", proto: 1, payload: icmp(type: 3, code: 3, quoting: Array(quoted.prefix(24))))) == expected)
        #expect(parse(ipv4("10.0.0.1", "192.0.2.9", proto: 1, payload: icmp(type: 3, code: 3, quoting: Array(quoted.prefix(23))))) == nil)
        // Other unreachables (host, admin-prohibited) and other ICMP types are not closed ports.
        #expect(parse(ipv4("10.0.0.1", "192.0.2.9", proto: 1, payload: icmp(type: 3, code: 1, quoting: quoted))) == nil)
        #expect(parse(ipv4("10.0.0.1", "192.0.2.9", proto: 1, payload: icmp(type: 8, code: 0, quoting: quoted))) == nil)
        // A firewall's REJECT for TCP quotes a TCP header.
        let quotedTCP = ipv4("192.0.2.9", "10.0.0.1", proto: 6, payload: tcp(40002, 443, flags: .syn))
        #expect(parse(ipv4("10.0.0.1", "192.0.2.9", proto: 1, payload: icmp(type: 3, code: 3, quoting: quotedTCP))) ==
                .portUnreachable(proto: .tcp, original: FlowEnds(source: endpoint("192.0.2.9", 40002), destination: endpoint("10.0.0.1", 443)),
                                 reporter: addr("10.0.0.1")))
        // The quoted packet must be the same family and carry UDP or TCP.
        let quotedV6 = ipv6("::1", "::1", next: 17, payload: udp(1, 2, payload: 0))
        #expect(parse(ipv4("10.0.0.1", "192.0.2.9", proto: 1, payload: icmp(type: 3, code: 3, quoting: quotedV6))) == nil)
        let quotedICMP = ipv4("192.0.2.9", "10.0.0.1", proto: 1, payload: [8, 0, 0, 0, 0, 0, 0, 0])
        #expect(parse(ipv4("10.0.0.1", "192.0.2.9", proto: 1, payload: icmp(type: 3, code: 3, quoting: quotedICMP))) == nil)
    }

    @Test func icmpv6PortUnreachable() {
        let quoted = ipv6("2001:db8::9", "2001:db8::1", next: 17, payload: udp(40001, 5353, payload: 10))
        let frame = ipv6("2001:db8::1", "2001:db8::9", next: 58, payload: icmp(type: 1, code: 4, quoting: quoted))
        #expect(parse(frame) == .portUnreachable(
            proto: .udp, original: FlowEnds(source: endpoint("2001:db8::9", 40001), destination: endpoint("2001:db8::1", 5353)),
            reporter: addr("2001:db8::1")))
        // Code 0 (no route) is not a closed port; ICMPv6 type 1 over IPv4 protocol 1 is not ICMPv6.
        #expect(parse(ipv6("2001:db8::1", "2001:db8::9", next: 58, payload: icmp(type: 1, code: 0, quoting: quoted))) == nil)
        #expect(parse(ipv4("10.0.0.1", "10.0.0.2", proto: 58, payload: icmp(type: 1, code: 4, quoting: quoted))) == nil)
        #expect(parse(Array(frame.prefix(48 + 40 + 3))) == nil)
        #expect(parse(Array(frame.prefix(48 + 40 + 4))) != nil)
    }

    @Test func malformedHeadersAreIgnored() {
        #expect(parse([]) == nil)
        #expect(parse([0x45]) == nil)
        #expect(parse([UInt8](repeating: 0, count: 60)) == nil)  // version 0
        var v5 = ipv4("10.0.0.1", "10.0.0.2", proto: 17, payload: udp(1, 2, payload: 4))
        v5[0] = 0x55
        #expect(parse(v5) == nil)
        var shortIHL = ipv4("10.0.0.1", "10.0.0.2", proto: 17, payload: udp(1, 2, payload: 4))
        shortIHL[0] = 0x44
        #expect(parse(shortIHL) == nil)
        var longIHL = ipv4("10.0.0.1", "10.0.0.2", proto: 17, payload: udp(1, 2, payload: 4))
        longIHL[0] = 0x4f  // 60-byte header, frame is 32 bytes
        #expect(parse(longIHL) == nil)
        // Total length shorter than the header; UDP length below 8; UDP length past the packet.
        #expect(parse(ipv4("10.0.0.1", "10.0.0.2", proto: 17, payload: udp(1, 2, payload: 4), totalLength: 19)) == nil)
        #expect(parse(ipv4("10.0.0.1", "10.0.0.2", proto: 17, payload: udp(1, 2, payload: 4, lengthField: 7))) == nil)
        #expect(parse(ipv4("10.0.0.1", "10.0.0.2", proto: 17, payload: udp(1, 2, payload: 4, lengthField: 13))) == nil)
        #expect(parse(ipv6("::1", "::1", next: 17, payload: udp(1, 2, payload: 4), payloadLength: 11)) == nil)
        // IPv6 with an extension header first (hop-by-hop) and an unknown protocol: not counted.
        #expect(parse(ipv6("::1", "::1", next: 0, payload: [17, 0, 0, 0, 0, 0, 0, 0] + udp(1, 2, payload: 4))) == nil)
        #expect(parse(ipv4("10.0.0.1", "10.0.0.2", proto: 47, payload: [UInt8](repeating: 0, count: 40))) == nil)
    }

    @Test func everyTruncationAndRandomBytesAreSafe() {
        let quoted = ipv4("192.0.2.9", "10.0.0.1", proto: 17, payload: udp(40001, 161, payload: 30))
        let frames: [[UInt8]] = [
            ipv4("10.0.0.2", "10.0.0.1", proto: 17, payload: udp(1, 2, payload: 64), options: 40),
            ipv4("10.0.0.2", "10.0.0.1", proto: 6, payload: tcp(1, 2, flags: .syn)),
            ipv4("10.0.0.1", "192.0.2.9", proto: 1, payload: icmp(type: 3, code: 3, quoting: quoted)),
            ipv6("::1", "::2", next: 58, payload: icmp(type: 1, code: 4, quoting: ipv6("::2", "::1", next: 6, payload: tcp(1, 2, flags: .syn)))),
            ipv6("::1", "::2", next: 17, payload: udp(1, 2, payload: 9)),
        ]
        // Whole, each is countable; cut inside the IP header, none is (and no cut traps).
        var wholeParsed = 0
        var headerCutsParsed = 0
        for frame in frames {
            if parse(frame) != nil { wholeParsed += 1 }
            for n in 0...frame.count where parse(Array(frame.prefix(n))) != nil && n < 20 { headerCutsParsed += 1 }
        }
        // Deterministic pseudo-random frames (bounded count), with plausible first bytes half the time.
        var seed: UInt64 = 0x9e3779b97f4a7c15
        func next() -> UInt64 {
            seed = seed &* 6364136223846793005 &+ 1442695040888963407
            return seed >> 33
        }
        var oddPayloads = 0
        for i in 0..<20_000 {
            var bytes = (0..<Int(next() % 200)).map { _ in UInt8(truncatingIfNeeded: next()) }
            if i % 2 == 0, !bytes.isEmpty { bytes[0] = i % 4 == 0 ? 0x45 : 0x60 }
            if i % 3 == 0, bytes.count > 9 { bytes[bytes[0] >> 4 == 6 ? 6 : 9] = [17, 6, 1, 58][i % 4] }
            // Whatever random bytes parse to, a UDP payload fits in the 16-bit length field.
            if case .udp(_, _, let payload)? = parse(bytes), payload < 0 || payload > 65_535 - 8 { oddPayloads += 1 }
        }
        #expect(wholeParsed == frames.count)
        #expect(headerCutsParsed == 0)
        #expect(oddPayloads == 0)
    }
}

// MARK: - Counting and loopback dedupe

@Suite struct CaptureCountingTests {
    @Test func directionFromPacketType() {
        let lo = PacketDirection.loopbackHardwareType
        let ether: UInt16 = 1
        #expect(PacketDirection.classify(packetType: 4, hardwareType: lo) == .loopback)  // OUTGOING on lo: counted once
        #expect(PacketDirection.classify(packetType: 0, hardwareType: lo) == nil)        // HOST on lo: the same packet again
        #expect(PacketDirection.classify(packetType: 2, hardwareType: lo) == nil)
        #expect(PacketDirection.classify(packetType: 0, hardwareType: ether) == .received)
        #expect(PacketDirection.classify(packetType: 1, hardwareType: ether) == .received)
        #expect(PacketDirection.classify(packetType: 4, hardwareType: ether) == .sent)
        #expect(PacketDirection.classify(packetType: 3, hardwareType: ether) == nil)     // OTHERHOST: not ours
    }

    @Test func udpCreditsTheLocalEnds() {
        var c = CaptureCounters()
        let p = CapturedPacket.udp(source: endpoint("127.0.0.1", 40000), destination: endpoint("127.0.0.1", 53), payloadBytes: 100)
        c.record(p, direction: .loopback)
        #expect(c.udp[40000] == TrafficCount(bytesSent: 100, packetsSent: 1))
        #expect(c.udp[53] == TrafficCount(bytesReceived: 100, packetsReceived: 1))
        c.record(.udp(source: endpoint("192.0.2.1", 999), destination: endpoint("10.0.0.1", 53), payloadBytes: 50), direction: .received)
        #expect(c.udp[53] == TrafficCount(bytesReceived: 150, packetsReceived: 2))
        #expect(c.udp[999] == nil)
        c.record(.udp(source: endpoint("10.0.0.1", 53), destination: endpoint("192.0.2.1", 999), payloadBytes: 70), direction: .sent)
        #expect(c.udp[53] == TrafficCount(bytesReceived: 150, bytesSent: 70, packetsReceived: 2, packetsSent: 1))
        #expect(c.udp[999] == nil)
    }

    @Test func resetsWeSendForSynsAreClosedPortHits() {
        var c = CaptureCounters()
        let reply = CapturedPacket.tcp(source: endpoint("10.0.0.1", 23), destination: endpoint("192.0.2.7", 50000),
                                       flags: [.rst, .ack], sequence: 0, acknowledgment: 1001)
        c.record(reply, direction: .sent)
        c.record(reply, direction: .loopback)
        #expect(c.closedPortHits == [ClosedPortKey(proto: .tcp, port: 23, source: addr("192.0.2.7")): 2])
        // A reset that arrives (a remote port closed to us), one with a real sequence number (an
        // abort), a bare RST (answer to an ACK), a SYN: none of them.
        c.record(reply, direction: .received)
        c.record(.tcp(source: endpoint("10.0.0.1", 23), destination: endpoint("192.0.2.7", 50000), flags: [.rst, .ack], sequence: 5, acknowledgment: 1), direction: .sent)
        c.record(.tcp(source: endpoint("10.0.0.1", 23), destination: endpoint("192.0.2.7", 50000), flags: .rst, sequence: 0, acknowledgment: 0), direction: .sent)
        c.record(.tcp(source: endpoint("10.0.0.1", 23), destination: endpoint("192.0.2.7", 50000), flags: .syn, sequence: 0, acknowledgment: 0), direction: .sent)
        #expect(c.closedPortHitTotal() == 2)
    }

    @Test func unreachablesWeSendAreClosedPortHits() {
        var c = CaptureCounters()
        let p = CapturedPacket.portUnreachable(proto: .udp, original: FlowEnds(source: endpoint("192.0.2.9", 4000), destination: endpoint("10.0.0.1", 161)),
                                               reporter: addr("10.0.0.1"))
        c.record(p, direction: .sent)
        c.record(p, direction: .received)
        #expect(c.closedPortHits == [ClosedPortKey(proto: .udp, port: 161, source: addr("192.0.2.9")): 1])
        #expect(c.closedPortHitTotal(proto: .tcp) == 0)
    }

    @Test func closedPortKeysAreBounded() {
        var c = CaptureCounters()
        let limit = CaptureCounters.closedPortKeyLimit
        for i in 0..<(limit + 10) {
            let source = IPAddress.v4(0x0a00_0000 | UInt32(i))
            c.record(.tcp(source: endpoint("10.0.0.1", 80), destination: Endpoint(address: source, port: 1), flags: [.rst, .ack], sequence: 0, acknowledgment: 1),
                     direction: .sent)
        }
        #expect(c.closedPortHits.count == limit)
        #expect(c.closedPortHitsUntracked == 10)
        #expect(c.closedPortHitTotal() == UInt64(limit + 10))
    }

    @Test func deltaKeepsOnlyChanges() {
        var a = CaptureCounters()
        a.udp[53] = TrafficCount(bytesReceived: 100, packetsReceived: 1)
        a.udp[54] = TrafficCount(bytesSent: 5, packetsSent: 1)
        a.closedPortHits[ClosedPortKey(proto: .udp, port: 9, source: addr("::1"))] = 2
        a.packetsSeen = 10
        a.kernelDrops = 1
        var b = a
        b.udp[53]!.bytesReceived += 50
        b.udp[53]!.packetsReceived += 1
        b.udp[1000] = TrafficCount(bytesSent: 7, packetsSent: 1)
        b.closedPortHits[ClosedPortKey(proto: .tcp, port: 9, source: addr("::1"))] = 1
        b.packetsSeen = 13
        b.kernelDrops = 4
        let d = b.delta(since: a)
        #expect(d.udp == [53: TrafficCount(bytesReceived: 50, packetsReceived: 1), 1000: TrafficCount(bytesSent: 7, packetsSent: 1)])
        #expect(d.closedPortHits == [ClosedPortKey(proto: .tcp, port: 9, source: addr("::1")): 1])
        #expect(d.packetsSeen == 3 && d.kernelDrops == 3)
        // Going backwards (a different capture) never underflows.
        #expect(a.delta(since: b).packetsSeen == 0)
    }
}

// MARK: - The kernel filter, run by a small classic-BPF interpreter

/// Runs a classic BPF program the way the kernel would on an AF_PACKET SOCK_DGRAM packet: returns
/// the snap length (0 = drop). Out-of-bounds loads drop, as in the kernel. Unknown opcodes fail.
private func runFilter(_ program: [BPFInstruction], packet: [UInt8], ethertype: UInt32, packetType: UInt32, ifindex: UInt32) -> UInt32? {
    var a: UInt32 = 0, x: UInt32 = 0, pc = 0
    func load(_ offset: Int, _ size: Int) -> UInt32? {
        guard offset >= 0, offset + size <= packet.count else { return nil }
        return packet[offset..<(offset + size)].reduce(0) { $0 << 8 | UInt32($1) }
    }
    for _ in 0..<4096 {
        guard pc < program.count else { return nil }
        let i = program[pc]
        pc += 1
        switch i.code & 0x07 {
        case 0x00:  // LD
            let size = [0x00: 4, 0x08: 2, 0x10: 1][Int(i.code & 0x18)] ?? 0
            switch i.code & 0xe0 {
            case 0x20 where i.k >= BPFInstruction.ancillaryBase:
                switch i.k {
                case BPFInstruction.ancillaryProtocol: a = ethertype
                case BPFInstruction.ancillaryPacketType: a = packetType
                case BPFInstruction.ancillaryInterfaceIndex: a = ifindex
                default: return nil
                }
            case 0x20: guard let v = load(Int(i.k), size) else { return 0 }; a = v
            case 0x40: guard let v = load(Int(x) + Int(i.k), size) else { return 0 }; a = v
            default: return nil
            }
        case 0x01:  // LDX B MSH
            guard i.code == 0xb1 else { return nil }
            guard let v = load(Int(i.k), 1) else { return 0 }
            x = 4 * (v & 0x0f)
        case 0x05:  // JMP
            let taken: Bool
            switch i.code & 0xf0 {
            case 0x00: pc += Int(i.k); continue
            case 0x10: taken = a == i.k
            case 0x20: taken = a > i.k
            case 0x30: taken = a >= i.k
            case 0x40: taken = a & i.k != 0
            default: return nil
            }
            pc += Int(taken ? i.jt : i.jf)
        case 0x06:  // RET K
            return i.k
        default:
            return nil
        }
    }
    return nil
}

@Suite struct CaptureFilterTests {
    let program = captureFilterProgram(loopbackIndex: 1)
    let eth: UInt32 = 2

    func verdict(_ frame: [UInt8], ethertype: UInt32? = nil, packetType: UInt32 = 0, ifindex: UInt32 = 2) -> UInt32? {
        let type = ethertype ?? (frame.first.map { $0 >> 4 == 6 ? 0x86dd : 0x0800 } ?? 0x0800)
        return runFilter(program, packet: frame, ethertype: type, packetType: packetType, ifindex: ifindex)
    }

    @Test func programIsWellFormed() {
        #expect(program.count < 64)
        for (pc, i) in program.enumerated() {
            if i.code & 0x07 == 0x05 {
                #expect(pc + 1 + Int(i.jt) < program.count && pc + 1 + Int(i.jf) < program.count, "jump out of range at \(pc)")
            }
        }
        #expect(program.last == BPFInstruction(code: 0x06, k: 0))
        #expect(program.packedForKernel.count == program.count * 8)
        #expect(captureFilterProgram(loopbackIndex: nil).count == program.count - 4)
    }

    @Test func keepsWhatTheCaptureCountsAndSnapsIt() {
        let quoted = ipv4("192.0.2.9", "10.0.0.1", proto: 17, payload: udp(40001, 161, payload: 30))
        let keep: [([UInt8], UInt32)] = [
            (ipv4("10.0.0.2", "10.0.0.1", proto: 17, payload: udp(1, 2, payload: 1000)), CaptureSnap.transport),
            (ipv4("10.0.0.2", "10.0.0.1", proto: 17, payload: udp(1, 2, payload: 1000, lengthField: 2000), moreFragments: true), CaptureSnap.transport),
            (ipv4("10.0.0.2", "10.0.0.1", proto: 6, payload: tcp(1, 2, flags: .syn), options: 8), CaptureSnap.transport),
            (ipv4("10.0.0.2", "10.0.0.1", proto: 6, payload: tcp(1, 2, flags: [.rst, .ack])), CaptureSnap.transport),
            // Scan probes without ACK: FIN, NULL, XMAS (IPv4 and IPv6).
            (ipv4("10.0.0.2", "10.0.0.1", proto: 6, payload: tcp(1, 2, flags: .fin)), CaptureSnap.transport),
            (ipv4("10.0.0.2", "10.0.0.1", proto: 6, payload: tcp(1, 2, flags: [])), CaptureSnap.transport),
            (ipv4("10.0.0.2", "10.0.0.1", proto: 6, payload: tcp(1, 2, flags: [.fin, .psh, .urg])), CaptureSnap.transport),
            (ipv6("::1", "::2", next: 6, payload: tcp(1, 2, flags: .fin)), CaptureSnap.transport),
            (ipv4("10.0.0.1", "10.0.0.2", proto: 1, payload: icmp(type: 3, code: 3, quoting: quoted)), CaptureSnap.icmp),
            (ipv6("::1", "::2", next: 17, payload: udp(1, 2, payload: 10)), CaptureSnap.transport),
            (ipv6("::1", "::2", next: 6, payload: tcp(1, 2, flags: [.syn, .ack])), CaptureSnap.transport),
            (ipv6("::1", "::2", next: 58, payload: icmp(type: 1, code: 4, quoting: [])), CaptureSnap.icmp),
        ]
        for (frame, snap) in keep { #expect(verdict(frame) == snap) }
        #expect(CaptureSnap.icmp >= 60 + 8 + 60 + 8)
        #expect(CaptureSnap.transport >= 60 + 20)
    }

    @Test func dropsTheRest() {
        let drop: [[UInt8]] = [
            ipv4("10.0.0.2", "10.0.0.1", proto: 6, payload: tcp(1, 2, flags: .ack)),           // plain data/ACK
            ipv4("10.0.0.2", "10.0.0.1", proto: 6, payload: tcp(1, 2, flags: [.fin, .ack])),
            ipv4("10.0.0.2", "10.0.0.1", proto: 17, payload: [1, 2, 3], fragmentOffset: 100), // later fragment
            ipv4("10.0.0.2", "10.0.0.1", proto: 1, payload: icmp(type: 8, code: 0, quoting: [])), // echo
            ipv4("10.0.0.2", "10.0.0.1", proto: 47, payload: [UInt8](repeating: 0, count: 30)),
            Array(ipv4("10.0.0.2", "10.0.0.1", proto: 6, payload: tcp(1, 2, flags: .syn)).prefix(33)), // no flags byte
            ipv6("::1", "::2", next: 6, payload: tcp(1, 2, flags: .ack)),
            ipv6("::1", "::2", next: 58, payload: icmp(type: 128, code: 0, quoting: [])),
            ipv6("::1", "::2", next: 0, payload: [17, 0, 0, 0, 0, 0, 0, 0] + udp(1, 2, payload: 4)),
            [],
        ]
        for frame in drop { #expect(verdict(frame) == 0) }
        // ARP and anything that is not IPv4/IPv6.
        #expect(verdict(ipv4("10.0.0.2", "10.0.0.1", proto: 17, payload: udp(1, 2, payload: 1)), ethertype: 0x0806) == 0)
    }

    @Test func loopbackKeepsOnlyTheOutgoingCopy() {
        let frame = ipv4("127.0.0.1", "127.0.0.1", proto: 17, payload: udp(1, 2, payload: 10))
        #expect(verdict(frame, packetType: 4, ifindex: 1) == CaptureSnap.transport)
        #expect(verdict(frame, packetType: 0, ifindex: 1) == 0)
        #expect(verdict(frame, packetType: 0, ifindex: eth) == CaptureSnap.transport)
        #expect(verdict(frame, packetType: 4, ifindex: eth) == CaptureSnap.transport)
        let noLoopback = captureFilterProgram(loopbackIndex: nil)
        #expect(runFilter(noLoopback, packet: frame, ethertype: 0x0800, packetType: 0, ifindex: 1) == CaptureSnap.transport)
    }
}

// MARK: - Real capture on loopback (root only)

/// Sockets on loopback for the live tests; every call bounded.
private enum Loop {
    static func socket(_ family: Int32, _ type: Int32) -> Int32 {
        Glibc.socket(family, type | Int32(SOCK_CLOEXEC.rawValue), 0)
    }

    static func withAddress<R>(_ ip: String, _ port: UInt16, _ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
        if ip.contains(":") {
            var a = sockaddr_in6()
            a.sin6_family = sa_family_t(AF_INET6)
            a.sin6_port = port.bigEndian
            _ = inet_pton(AF_INET6, ip, &a.sin6_addr)
            return withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in6>.size)) } }
        }
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_port = port.bigEndian
        _ = inet_pton(AF_INET, ip, &a.sin_addr)
        return withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
    }

    /// A socket bound to `ip` on a kernel-chosen port.
    static func bound(_ ip: String, _ type: Int32) throws -> (fd: Int32, port: UInt16) {
        let fd = socket(ip.contains(":") ? AF_INET6 : AF_INET, type)
        try #require(fd >= 0)
        try #require(withAddress(ip, 0) { bind(fd, $0, $1) } == 0)
        var storage = sockaddr_in6()
        var length = socklen_t(MemoryLayout<sockaddr_in6>.size)
        try #require(withUnsafeMutablePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } } == 0)
        return (fd, UInt16(bigEndian: storage.sin6_port))  // sin_port and sin6_port share the offset
    }

    /// A port with nothing bound on it right now (bind, note, close).
    static func closedPort(_ ip: String, _ type: Int32) throws -> UInt16 {
        let (fd, port) = try bound(ip, type)
        close(fd)
        return port
    }

    static func send(_ fd: Int32, to ip: String, _ port: UInt16, bytes: Int) -> Bool {
        let payload = [UInt8](repeating: 0x5a, count: bytes)
        return payload.withUnsafeBytes { p in withAddress(ip, port) { sendto(fd, p.baseAddress, p.count, 0, $0, $1) } } == bytes
    }

    static func sleep(milliseconds: Int) {
        var ts = timespec(tv_sec: milliseconds / 1000, tv_nsec: (milliseconds % 1000) * 1_000_000)
        _ = nanosleep(&ts, nil)
    }

    static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    /// Polls the capture until `done` holds (or 3 s pass), then sends one sentinel datagram over
    /// `ip` to a socket of its own and polls (at most 3 s) until the capture has counted it, and
    /// returns that snapshot. No grace period is needed for late duplicates: the capture counts a
    /// loopback packet by its PACKET_OUTGOING copy, which the kernel writes into the capture's one
    /// ring during the send itself, and one thread reads that ring in order, so everything sent
    /// before the sentinel is counted once the sentinel is. The socket receiving the sentinel
    /// first means its PACKET_HOST copy (the one a broken dedupe would count twice) has passed
    /// the tap too, and with it the receive path's backlog in front of it on that CPU.
    static func settle(_ capture: PacketCapture, over ip: String = "127.0.0.1",
                       until done: (CaptureCounters) -> Bool) throws -> CaptureCounters {
        let deadline = now() + 3
        while now() < deadline, !done(capture.snapshot()) { sleep(milliseconds: 20) }
        let type = Int32(SOCK_DGRAM.rawValue)
        let sentinel = try bound(ip, type)
        defer { close(sentinel.fd) }
        let sender = try bound(ip, type)
        defer { close(sender.fd) }
        try #require(send(sender.fd, to: ip, sentinel.port, bytes: 1))
        var pfd = pollfd(fd: sentinel.fd, events: Int16(POLLIN), revents: 0)
        try #require(poll(&pfd, 1, 3000) == 1, "the sentinel never reached its socket")
        let counted = now() + 3
        var totals = capture.snapshot()
        while totals.udp[sentinel.port] == nil, now() < counted {
            sleep(milliseconds: 20)
            totals = capture.snapshot()
        }
        try #require(totals.udp[sentinel.port]?.packetsReceived == 1, "the capture never counted the sentinel")
        return totals
    }
}

// These open an AF_PACKET socket, which needs root or CAP_NET_RAW: enabled only as root.
@Suite(.serialized, .blocking) struct LiveCaptureTests {
    @Test(.enabled(if: getuid() == 0, "AF_PACKET capture needs root"))
    func udpOnLoopbackIsCountedOncePerDatagram() throws {
        for ip in ["127.0.0.1", "::1"] {
            let capture = try PacketCapture(interface: "lo")
            capture.start()
            defer { capture.stop() }
            let receiver = try Loop.bound(ip, Int32(SOCK_DGRAM.rawValue))
            defer { close(receiver.fd) }
            let sender = try Loop.bound(ip, Int32(SOCK_DGRAM.rawValue))
            defer { close(sender.fd) }
            let (count, size) = (200, 300)
            for _ in 0..<count { try #require(Loop.send(sender.fd, to: ip, receiver.port, bytes: size)) }
            let totals = try Loop.settle(capture, over: ip) { ($0.udp[receiver.port]?.packetsReceived ?? 0) >= UInt64(count) }
            let received = try #require(totals.udp[receiver.port], "nothing counted for \(ip)")
            #expect(received.packetsReceived == UInt64(count), "\(ip): each datagram once, not twice")
            let expectedBytes = Double(count * size)
            #expect(abs(Double(received.bytesReceived) - expectedBytes) <= expectedBytes * 0.01, "\(ip): \(received.bytesReceived) bytes")
            #expect(received.packetsSent == 0)
            let sent = try #require(totals.udp[sender.port])
            #expect(sent.packetsSent == UInt64(count) && sent.bytesSent == UInt64(count * size))
            #expect(totals.kernelDrops == 0)
            #expect(capture.threadCPUSeconds != nil)
        }
    }

    @Test(.enabled(if: getuid() == 0, "AF_PACKET capture needs root"))
    func theDetectorsIgnoreALocalClientOfManyLoopbackPortsButCountItsSyns() throws {
        var settings = DetectorSettings()
        settings.scanPorts = 10
        let capture = try PacketCapture(interface: "lo", detectors: settings)
        capture.start()
        defer { capture.stop() }
        let sender = try Loop.bound("127.0.0.1", Int32(SOCK_DGRAM.rawValue))
        defer { close(sender.fd) }
        var ports = Set<UInt16>()
        while ports.count < 15 { ports.insert(try Loop.closedPort("127.0.0.1", Int32(SOCK_DGRAM.rawValue))) }
        for port in ports { try #require(Loop.send(sender.fd, to: "127.0.0.1", port, bytes: 1)) }
        // A SYN to a closed loopback port: it reaches the flood detector's tally.
        let tcpPort = try Loop.closedPort("127.0.0.1", Int32(SOCK_STREAM.rawValue))
        let client = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(client) }
        _ = Loop.withAddress("127.0.0.1", tcpPort) { connect(client, $0, $1) }
        var syns: UInt64 = 0
        var events: [SecurityEvent] = []
        let deadline = Loop.now() + 3
        while Loop.now() < deadline, syns == 0 {
            Loop.sleep(milliseconds: 20)
            let found = capture.drainFindings(now: Double(time(nil)))
            syns += found?.syns[tcpPort]?.total ?? 0
            events += found?.events ?? []
        }
        let counted = try Loop.settle(capture) { c in ports.allSatisfy { (c.udp[$0]?.packetsReceived ?? 0) > 0 } }
        #expect(ports.allSatisfy { (counted.udp[$0]?.packetsReceived ?? 0) == 1 }, "the capture saw every datagram")
        #expect(syns >= 1)
        events += capture.drainFindings(now: Double(time(nil)))?.events ?? []
        #expect(!events.contains { $0.source == addr("127.0.0.1") }, "\(events)")
    }

    @Test(.enabled(if: getuid() == 0, "AF_PACKET capture needs root"))
    func udpToAClosedPortIsOneHit() throws {
        for ip in ["127.0.0.1", "::1"] {
            let capture = try PacketCapture(interface: "lo")
            capture.start()
            defer { capture.stop() }
            let sender = try Loop.bound(ip, Int32(SOCK_DGRAM.rawValue))
            defer { close(sender.fd) }
            let port = try Loop.closedPort(ip, Int32(SOCK_DGRAM.rawValue))
            try #require(Loop.send(sender.fd, to: ip, port, bytes: 12))
            let key = ClosedPortKey(proto: .udp, port: port, source: addr(ip))
            let totals = try Loop.settle(capture, over: ip) { $0.closedPortHits[key] != nil }
            #expect(totals.closedPortHits[key] == 1, "\(ip): \(totals.closedPortHits)")
            #expect(totals.closedPortHits.keys.filter { $0.port == port }.count == 1)
            // The datagram itself still counts as traffic to that port.
            #expect(totals.udp[port]?.packetsReceived == 1)
        }
    }

    @Test(.enabled(if: getuid() == 0, "AF_PACKET capture needs root"))
    func connectToAClosedTCPPortIsOneHit() throws {
        for ip in ["127.0.0.1", "::1"] {
            // Everywhere (nil): loopback's two copies must still count once.
            let capture = try PacketCapture(interface: nil)
            capture.start()
            defer { capture.stop() }
            // Bound but not listening: the port is ours, and a SYN to it gets a RST.
            let holder = try Loop.bound(ip, Int32(SOCK_STREAM.rawValue))
            defer { close(holder.fd) }
            let client = Loop.socket(ip.contains(":") ? AF_INET6 : AF_INET, Int32(SOCK_STREAM.rawValue))
            try #require(client >= 0)
            defer { close(client) }
            let rc = Loop.withAddress(ip, holder.port) { connect(client, $0, $1) }
            #expect(rc == -1 && errno == ECONNREFUSED)
            let key = ClosedPortKey(proto: .tcp, port: holder.port, source: addr(ip))
            let totals = try Loop.settle(capture, over: ip) { $0.closedPortHits[key] != nil }
            #expect(totals.closedPortHits[key] == 1, "\(ip): \(totals.closedPortHits)")
        }
    }

    @Test(.enabled(if: getuid() == 0, "AF_PACKET capture needs root"))
    func unknownInterfaceIsAUsageError() {
        #expect(throws: PortwatchError.self) { try PacketCapture(interface: "nosuchif0") }
        do {
            _ = try PacketCapture(interface: "nosuchif0")
        } catch {
            #expect(error.kind == .usage)
        }
    }

    @Test(.enabled(if: getuid() == 0, "AF_PACKET capture needs root"))
    func stopIsIdempotentAndSnapshotsSurviveIt() throws {
        let capture = try PacketCapture(interface: "lo")
        #expect(capture.threadCPUSeconds == nil)
        capture.start()
        capture.start()
        capture.stop()
        capture.stop()
        capture.start()  // stays stopped
        #expect(capture.threadCPUSeconds == nil)
        #expect(capture.snapshot().kernelDrops == 0)
    }
}

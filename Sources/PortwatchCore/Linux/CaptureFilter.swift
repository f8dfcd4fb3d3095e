/// The classic BPF program the packet capture attaches to its AF_PACKET socket (SO_ATTACH_FILTER),
/// hand-assembled. The kernel runs it on every packet of the bound interface(s) before anything is
/// copied to user space, so the capture only pays for the packets it counts.
///
/// The socket is `SOCK_DGRAM`, so offset 0 is the network header on every interface type
/// (Ethernet, loopback, tun, ...), and the ethertype comes from the skb (ancillary load).

/// One classic BPF instruction, laid out as the kernel's `struct sock_filter` once packed.
public struct BPFInstruction: Sendable, Equatable, CustomStringConvertible {
    public var code: UInt16
    public var jt: UInt8
    public var jf: UInt8
    public var k: UInt32

    public init(code: UInt16, jt: UInt8 = 0, jf: UInt8 = 0, k: UInt32 = 0) {
        self.code = code
        self.jt = jt
        self.jf = jf
        self.k = k
    }

    public var description: String {
        "{ 0x\(String(code, radix: 16)), \(jt), \(jf), 0x\(String(k, radix: 16)) }"
    }

    // Opcode pieces (linux/bpf_common.h, linux/filter.h).
    public static let ld: UInt16 = 0x00, ldx: UInt16 = 0x01, jmp: UInt16 = 0x05, ret: UInt16 = 0x06
    public static let word: UInt16 = 0x00, half: UInt16 = 0x08, byte: UInt16 = 0x10
    public static let abs: UInt16 = 0x20, ind: UInt16 = 0x40, msh: UInt16 = 0xa0
    public static let ja: UInt16 = 0x00, jeq: UInt16 = 0x10, jgt: UInt16 = 0x20, jge: UInt16 = 0x30, jset: UInt16 = 0x40
    public static let constant: UInt16 = 0x00  // BPF_K

    /// SKF_AD_OFF: loads at this (negative) offset read skb metadata instead of packet bytes.
    public static let ancillaryBase = UInt32(bitPattern: -0x1000)
    /// skb->protocol (the ethertype, host order).
    public static let ancillaryProtocol = ancillaryBase &+ 0
    /// skb->pkt_type (PACKET_HOST 0 ... PACKET_OUTGOING 4).
    public static let ancillaryPacketType = ancillaryBase &+ 4
    /// skb->dev->ifindex.
    public static let ancillaryInterfaceIndex = ancillaryBase &+ 8
}

/// Snap lengths the filter returns (bytes from the network header that reach user space).
public enum CaptureSnap {
    /// UDP and TCP: the largest IPv4 header (60) + TCP's fixed header (20). Headers are all we read.
    public static let transport: UInt32 = 80
    /// ICMP errors quote the offending packet: outer IPv4 header (up to 60) + 8 + inner IPv4 header
    /// (up to 60) + the inner transport ports (8) = 136; IPv6 needs 40 + 8 + 40 + 8 = 96.
    public static let icmp: UInt32 = 160
}

/// The capture's kernel filter. It keeps: UDP (first or only fragments), TCP segments with SYN or
/// RST or without ACK (every segment of an established connection carries ACK; one without it
/// and without SYN/RST is a FIN, NULL or XMAS scan probe), ICMP destination-unreachable and ICMPv6 destination-unreachable, over IPv4 and IPv6
/// (IPv6: the fixed header's next header only, no extension headers), and truncates each to the
/// few header bytes the parser needs. When `loopbackIndex` is given, packets on that interface are
/// kept only in their PACKET_OUTGOING copy: loopback shows every packet twice (sent, then received)
/// and the outgoing copy alone carries the whole story, so half the work never leaves the kernel.
public func captureFilterProgram(loopbackIndex: UInt32?) -> [BPFInstruction] {
    // A tiny assembler: jumps name labels, resolved to the relative offsets classic BPF wants.
    enum Step {
        case op(BPFInstruction)
        case jump(code: UInt16, k: UInt32, whenTrue: String?, whenFalse: String?)  // nil = next
        case label(String)
    }
    typealias I = BPFInstruction
    let ldAbsW = I.ld | I.word | I.abs, ldAbsH = I.ld | I.half | I.abs, ldAbsB = I.ld | I.byte | I.abs
    let ldIndB = I.ld | I.byte | I.ind, ldxMsh = I.ldx | I.byte | I.msh
    let jeq = I.jmp | I.jeq | I.constant, jset = I.jmp | I.jset | I.constant
    let retK = I.ret | I.constant

    var steps: [Step] = []
    if let lo = loopbackIndex {
        steps += [
            .op(I(code: ldAbsW, k: I.ancillaryInterfaceIndex)),          // A = ifindex the packet passes
            .jump(code: jeq, k: lo, whenTrue: nil, whenFalse: "protocol"), // loopback? else go on
            .op(I(code: ldAbsW, k: I.ancillaryPacketType)),              // A = pkt_type
            .jump(code: jeq, k: 4, whenTrue: "protocol", whenFalse: "drop"), // PACKET_OUTGOING only
        ]
    }
    steps += [
        .label("protocol"),
        .op(I(code: ldAbsW, k: I.ancillaryProtocol)),                    // A = ethertype
        .jump(code: jeq, k: 0x0800, whenTrue: "ipv4", whenFalse: nil),   // ETH_P_IP
        .jump(code: jeq, k: 0x86dd, whenTrue: "ipv6", whenFalse: "drop"), // ETH_P_IPV6, else drop

        .label("ipv4"),
        .op(I(code: ldAbsH, k: 6)),                                      // A = flags + fragment offset
        .jump(code: jset, k: 0x1fff, whenTrue: "drop", whenFalse: nil),  // later fragment: no ports
        .op(I(code: ldAbsB, k: 9)),                                      // A = IPv4 protocol
        .jump(code: jeq, k: 17, whenTrue: "transport", whenFalse: nil),  // UDP: keep
        .jump(code: jeq, k: 6, whenTrue: "tcp4", whenFalse: nil),        // TCP: look at flags
        .jump(code: jeq, k: 1, whenTrue: "icmp4", whenFalse: "drop"),    // ICMP: look at type
        .label("tcp4"),
        .op(I(code: ldxMsh, k: 0)),                                      // X = 4 * IHL (header length)
        .op(I(code: ldIndB, k: 13)),                                     // A = TCP flags byte
        .jump(code: jset, k: 0x06, whenTrue: "transport", whenFalse: nil), // SYN or RST: keep
        .jump(code: jset, k: 0x10, whenTrue: "drop", whenFalse: "transport"), // no ACK (FIN/NULL/XMAS probe): keep
        .label("icmp4"),
        .op(I(code: ldxMsh, k: 0)),                                      // X = 4 * IHL
        .op(I(code: ldIndB, k: 0)),                                      // A = ICMP type
        .jump(code: jeq, k: 3, whenTrue: "icmp", whenFalse: "drop"),     // destination unreachable

        .label("ipv6"),
        .op(I(code: ldAbsB, k: 6)),                                      // A = next header
        .jump(code: jeq, k: 17, whenTrue: "transport", whenFalse: nil),  // UDP
        .jump(code: jeq, k: 6, whenTrue: "tcp6", whenFalse: nil),        // TCP
        .jump(code: jeq, k: 58, whenTrue: "icmp6", whenFalse: "drop"),   // ICMPv6
        .label("tcp6"),
        .op(I(code: ldAbsB, k: 40 + 13)),                                // A = TCP flags (after 40-byte header)
        .jump(code: jset, k: 0x06, whenTrue: "transport", whenFalse: nil), // SYN or RST: keep
        .jump(code: jset, k: 0x10, whenTrue: "drop", whenFalse: "transport"), // no ACK: keep
        .label("icmp6"),
        .op(I(code: ldAbsB, k: 40)),                                     // A = ICMPv6 type
        .jump(code: jeq, k: 1, whenTrue: "icmp", whenFalse: "drop"),     // destination unreachable

        .label("transport"),
        .op(I(code: retK, k: CaptureSnap.transport)),                    // keep the headers
        .label("icmp"),
        .op(I(code: retK, k: CaptureSnap.icmp)),                         // keep the quoted packet too
        .label("drop"),
        .op(I(code: retK, k: 0)),                                        // drop
    ]

    // Resolve labels: classic BPF jumps are forward-only, relative to the next instruction.
    var address: [String: Int] = [:]
    var pc = 0
    for step in steps {
        if case .label(let name) = step { address[name] = pc } else { pc += 1 }
    }
    var program: [BPFInstruction] = []
    for step in steps {
        switch step {
        case .label: continue
        case .op(let instruction): program.append(instruction)
        case .jump(let code, let k, let t, let f):
            let here = program.count
            func offset(_ label: String?) -> UInt8 {
                guard let label, let target = address[label] else { return 0 }
                // Every label above is defined and lies ahead; the program is far below 256 steps.
                return UInt8(clamping: target - here - 1)
            }
            program.append(BPFInstruction(code: code, jt: offset(t), jf: offset(f), k: k))
        }
    }
    return program
}

extension Array where Element == BPFInstruction {
    /// The program as the kernel's `struct sock_filter[]` bytes (native byte order).
    var packedForKernel: [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(count * 8)
        for instruction in self {
            Swift.withUnsafeBytes(of: instruction.code) { bytes.append(contentsOf: $0) }
            bytes.append(instruction.jt)
            bytes.append(instruction.jf)
            Swift.withUnsafeBytes(of: instruction.k) { bytes.append(contentsOf: $0) }
        }
        return bytes
    }
}

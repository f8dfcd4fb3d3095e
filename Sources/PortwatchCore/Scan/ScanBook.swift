/// Why a port got its state, in the words the output uses.
enum ScanReason: UInt8 {
    case undecided, connected, refused, noAnswer, reply
    case icmpPortUnreachable, icmpAdminProhibited, icmpHostUnreachable, icmpNetUnreachable, icmpOther
    case noRoute, noLocalAddress

    var text: String {
        switch self {
        case .undecided: return "undecided"
        case .connected: return "connected"
        case .refused: return "refused"
        case .noAnswer: return "no answer"
        case .reply: return "reply"
        case .icmpPortUnreachable: return "icmp port-unreachable"
        case .icmpAdminProhibited: return "icmp admin-prohibited"
        case .icmpHostUnreachable: return "icmp host-unreachable"
        case .icmpNetUnreachable: return "icmp net-unreachable"
        case .icmpOther: return "icmp error"
        case .noRoute: return "no route"
        case .noLocalAddress: return "no local address"
        }
    }
}

/// The scan's ledger: which probe is next, what each port got, per-host timing. Compact on
/// purpose (a few bytes a port): a block of hosts times thousands of ports adds up.
struct ScanBook {
    let hostCount: Int
    let ports: [UInt16]
    /// Probes in all: every port of every host, interleaved across hosts so no host gets a burst.
    let total: Int
    private(set) var states: [UInt8]
    private(set) var reasons: [UInt8]
    private(set) var attempts: [UInt8]
    private(set) var localErrors: [UInt8]
    private(set) var rtts: [Float]
    var banners: [Int: String] = [:]
    private var nextFirst = 0
    private var retries: [Int] = []
    private var retryHead = 0
    private(set) var done = 0
    private(set) var open = 0
    private(set) var hostStart: [Double]
    private(set) var hostEnd: [Double]

    /// Where undecided ports sit in `states`.
    static let undecided: UInt8 = 255

    init(hostCount: Int, ports: [UInt16]) {
        self.hostCount = hostCount
        self.ports = ports
        total = hostCount * ports.count
        states = Array(repeating: Self.undecided, count: total)
        reasons = Array(repeating: 0, count: total)
        attempts = Array(repeating: 0, count: total)
        localErrors = Array(repeating: 0, count: total)
        rtts = Array(repeating: -1, count: total)
        hostStart = Array(repeating: -1, count: hostCount)
        hostEnd = Array(repeating: 0, count: hostCount)
    }

    func host(_ probe: Int) -> Int { probe % hostCount }
    func port(_ probe: Int) -> UInt16 { ports[probe / hostCount] }
    var isFinished: Bool { done == total }
    var hasQueued: Bool { retryHead < retries.count || nextFirst < total }

    /// The next probe to send: retries first (their ports have waited longest), then new ports.
    mutating func next(now: Double) -> Int? {
        let probe: Int
        if retryHead < retries.count {
            probe = retries[retryHead]
            retryHead += 1
            if retryHead > 4096 && retryHead * 2 > retries.count {
                retries.removeFirst(retryHead)
                retryHead = 0
            }
        } else if nextFirst < total {
            probe = nextFirst
            nextFirst += 1
        } else {
            return nil
        }
        let h = host(probe)
        if hostStart[h] < 0 { hostStart[h] = now }
        attempts[probe] &+= 1
        return probe
    }

    /// The probe `next` would return, without taking it.
    func peek() -> Int? {
        if retryHead < retries.count { return retries[retryHead] }
        return nextFirst < total ? nextFirst : nil
    }

    /// Puts a probe back for another attempt.
    mutating func retry(_ probe: Int) { retries.append(probe) }

    /// Puts back a probe that never left because the local side ran short; it does not count as
    /// an attempt. After a few in a row the port is given up as filtered with the errno's reason.
    mutating func localFailure(_ probe: Int, now: Double, reason: ScanReason) {
        attempts[probe] &-= 1
        localErrors[probe] &+= 1
        if localErrors[probe] > 20 {
            attempts[probe] &+= 1
            decide(probe, .filtered, reason: reason, rtt: nil, now: now)
        } else {
            retries.append(probe)
        }
    }

    func attemptsMade(_ probe: Int) -> Int { Int(attempts[probe]) }

    mutating func decide(_ probe: Int, _ state: RemoteState, reason: ScanReason, rtt: Double?, now: Double) {
        guard states[probe] == Self.undecided else { return }
        states[probe] = Self.code(state)
        reasons[probe] = reason.rawValue
        if let rtt { rtts[probe] = Float(rtt) }
        done += 1
        if state == .open { open += 1 }
        let h = host(probe)
        hostEnd[h] = max(hostEnd[h], now)
    }

    func isDecided(_ probe: Int) -> Bool { states[probe] != Self.undecided }

    /// Takes back a decision made on silence and queues the port again (a UDP host turned out to
    /// rate-limit its ICMP errors, so its silence meant nothing).
    mutating func reopen(_ probe: Int) {
        guard states[probe] == Self.code(.openFiltered), reasons[probe] == ScanReason.noAnswer.rawValue else { return }
        states[probe] = Self.undecided
        reasons[probe] = ScanReason.undecided.rawValue
        done -= 1
        retries.append(probe)
    }

    static func code(_ s: RemoteState) -> UInt8 {
        switch s {
        case .open: return 0
        case .closed: return 1
        case .filtered, .unreachable: return 2
        case .openFiltered: return 3
        }
    }

    static func state(_ code: UInt8) -> RemoteState {
        switch code {
        case 0: return .open
        case 1: return .closed
        case 2: return .filtered
        default: return .openFiltered
        }
    }

    /// The ports decided for one host, ascending, with service names.
    func results(host h: Int, proto: TransportProtocol, services: ServiceDatabase) -> [ScanPortResult] {
        var out: [ScanPortResult] = []
        for (i, port) in ports.enumerated() {
            let probe = i * hostCount + h
            guard states[probe] != Self.undecided else { continue }
            out.append(ScanPortResult(proto: proto, port: port, state: Self.state(states[probe]),
                                      service: services.name(port: port, proto: proto),
                                      rtt: rtts[probe] >= 0 ? Double(rtts[probe]) : nil,
                                      banner: banners[probe], reason: ScanReason(rawValue: reasons[probe])?.text ?? "",
                                      attempts: Int(attempts[probe])))
        }
        return out.sorted { $0.port < $1.port }
    }

    func seconds(host h: Int) -> Double { hostStart[h] < 0 ? 0 : max(0, hostEnd[h] - hostStart[h]) }
}

// What the nftables ruleset does with a new inbound connection to a listening port.
//
// The packet asked about: protocol and destination port of the listener, one address family,
// connection-tracking state `new` (a first SYN or datagram), arriving on an interface that is
// not `lo` (traffic from outside), addressed to this host directly (not DNATed). Anything
// else a rule looks at — the source address, a rate limit, a mark, an iptables extension —
// the packet does not tell, so such a rule *may* match.
//
// Rules are evaluated three-valued (matches / does not / may) and outcomes are sets of final
// verdicts: a rule that may match forks the outcome into "its verdict" and "what the rest of
// the chain does". When both sides agree (a source-restricted accept in front of a port that
// is accepted anyway) the answer is still definite; when they differ the verdict is `unknown`
// and names that rule. Chains are walked from the end, so every suffix is computed once and
// a ruleset of n rules costs O(n) per port, however many rules may match.

/// The firewall's answer for a port: one word and the rule that decided it.
public enum FirewallVerdictKind: String, Sendable, Hashable, Codable {
    case accept, drop, reject, unknown
    /// No firewall loaded (or none filtering input).
    case none
}

/// The verdict for a port with the rule (or policy) that decided it, or made it undecidable.
public struct FirewallVerdict: Sendable, Hashable {
    public var verdict: FirewallVerdictKind
    /// `tcp dport 22 accept (inet filter input)`, `policy drop (inet filter input)`, or why
    /// nothing is known.
    public var rule: String

    public init(_ verdict: FirewallVerdictKind, rule: String) {
        self.verdict = verdict
        self.rule = rule
    }

    /// Blocked from outside: dropped or rejected.
    public var blocks: Bool { verdict == .drop || verdict == .reject }
}

/// Address family of the packet asked about.
public enum PacketFamily: String, Sendable, Hashable, CaseIterable {
    case ipv4, ipv6
}

/// The set of verdicts a chain may end in, and the rule to name for it.
private struct Outcome {
    static let accept: UInt8 = 1, drop: UInt8 = 2, reject: UInt8 = 4, other: UInt8 = 8
    var verdicts: UInt8
    var rule: String

    var isDefinite: Bool { verdicts == Outcome.accept || verdicts == Outcome.drop || verdicts == Outcome.reject }

    /// Either `a` (the rule matched) or `b` (it did not): `cause` is the rule that forks.
    static func either(_ a: Outcome, _ b: Outcome, cause: String) -> Outcome {
        let union = a.verdicts | b.verdicts
        if a.verdicts == b.verdicts && a.isDefinite { return Outcome(verdicts: union, rule: b.rule) }
        return Outcome(verdicts: union, rule: cause)
    }
}

/// Three-valued match result.
private enum Match {
    case yes, no
    case maybe(String)
}

/// Evaluates a parsed ruleset for new inbound packets.
public struct FirewallEvaluator: Sendable {
    public let ruleset: NftRuleset
    /// Base chains hooked on input, in the order the kernel runs them.
    private let inputChains: [NftChain]

    public init(_ ruleset: NftRuleset) {
        self.ruleset = ruleset
        inputChains = ruleset.chains
            .filter { $0.hook == "input" && ($0.type ?? "filter") == "filter" && ["inet", "ip", "ip6"].contains($0.family) }
            .enumerated().sorted { ($0.element.priority, $0.offset) < ($1.element.priority, $1.offset) }.map(\.element)
    }

    /// The verdict for a new connection to `port` over `family`, from outside (not `lo`) or,
    /// with `overLoopback`, from this host over `lo` (all a loopback-only listener ever sees).
    public func verdict(proto: TransportProtocol, port: UInt16, family: PacketFamily,
                        overLoopback: Bool = false) -> FirewallVerdict {
        if ruleset.tableCount == 0 { return FirewallVerdict(.none, rule: "no firewall loaded") }
        let chains = inputChains.filter { $0.family == "inet" || $0.family == (family == .ipv4 ? "ip" : "ip6") }
        if chains.isEmpty { return FirewallVerdict(.none, rule: "no chain filters input (\(family.rawValue))") }
        let packet = Packet(proto: proto, port: port, family: family, overLoopback: overLoopback)
        // An accept ends one base chain only: the next one (by priority) still sees the packet.
        var rest = Outcome(verdicts: Outcome.accept, rule: "")
        for chain in chains.reversed() {
            let policy = chain.policy == "drop" ? Outcome.drop : Outcome.accept
            let own = evaluate(chain, packet, onEnd: Outcome(verdicts: policy, rule: "policy \(chain.policy ?? "accept") (\(chain.label))"),
                               depth: 0)
            if own.verdicts & Outcome.accept == 0 {
                rest = own
            } else {
                // Accepted here: the later chains decide. Name the first accepting rule when
                // they all accept, the later chain's rule when it blocks, and the forking rule
                // when this chain itself is undecided.
                let combined = (own.verdicts & ~Outcome.accept) | rest.verdicts
                let rule = own.verdicts == Outcome.accept ? (rest.verdicts == Outcome.accept ? own.rule : rest.rule) : own.rule
                rest = Outcome(verdicts: combined, rule: rule)
            }
        }
        switch rest.verdicts {
        case Outcome.accept: return FirewallVerdict(.accept, rule: rest.rule)
        case Outcome.drop: return FirewallVerdict(.drop, rule: rest.rule)
        case Outcome.reject: return FirewallVerdict(.reject, rule: rest.rule)
        default: return FirewallVerdict(.unknown, rule: rest.rule)
        }
    }

    /// What `chain` does with the packet when entered; `onEnd` is what happens when it
    /// ends or returns (the policy of a base chain, the rest of the caller for a jump).
    private func evaluate(_ chain: NftChain, _ packet: Packet, onEnd: Outcome, depth: Int) -> Outcome {
        if depth > 16 {
            return Outcome(verdicts: Outcome.other, rule: "jumps nest deeper than 16 chains (\(chain.label))")
        }
        var out = onEnd
        for rule in chain.rules.reversed() {
            let text = rule.text
            var match = Match.yes
            var effect: Outcome? = nil
            for expression in rule.expressions {
                guard let (key, body) = expression.soleKey else {
                    match = merge(match, .maybe("cannot read"))
                    continue
                }
                switch key {
                case "match":
                    match = merge(match, evaluateMatch(body, packet, chain))
                case "counter", "log", "comment", "notrack", "mangle", "set", "map":
                    continue
                case "accept": effect = Outcome(verdicts: Outcome.accept, rule: text)
                case "drop": effect = Outcome(verdicts: Outcome.drop, rule: text)
                case "reject":
                    // `reject with icmp` / `with tcp reset` carry a protocol match that nft
                    // keeps in the kernel but leaves out of its listing (a "dependency"): the
                    // rule only ever sees IPv4 / IPv6 / TCP packets.
                    switch body["type"]?.stringValue {
                    case "icmp" where packet.family != .ipv4, "icmpv6" where packet.family != .ipv6,
                         "tcp reset" where packet.proto != .tcp:
                        match = .no
                    default:
                        effect = Outcome(verdicts: Outcome.reject, rule: text)
                    }
                case "continue": effect = out
                case "return": effect = onEnd
                case "jump", "goto":
                    guard let name = body["target"]?.stringValue, let target = ruleset.chain(named: name, besides: chain) else {
                        effect = Outcome(verdicts: Outcome.other, rule: text)
                        break
                    }
                    effect = evaluate(target, packet, onEnd: key == "jump" ? out : onEnd, depth: depth + 1)
                case "vmap":
                    effect = evaluateVmap(body, packet, chain, text: text, next: out, onEnd: onEnd, depth: depth)
                case "xt":
                    // iptables-nft extensions: read from the rule's iptables-save line where
                    // the evaluator knows them; any other one cannot be decided here.
                    let name = body["name"]?.stringValue ?? "?"
                    if body["type"]?.stringValue == "target" {
                        switch name {
                        case "REJECT": effect = Outcome(verdicts: Outcome.reject, rule: text)
                        case "LOG", "NFLOG", "TRACE", "AUDIT": continue
                        default: effect = Outcome(verdicts: Outcome.other, rule: text)
                        }
                    } else if name == "comment" {
                        continue
                    } else if let known = iptablesMatch(name, line: rule.iptables, port: packet.port) {
                        match = merge(match, known ? .yes : .no)
                    } else {
                        match = merge(match, .maybe("iptables extension \(name)"))
                    }
                case "queue":
                    effect = Outcome(verdicts: Outcome.other, rule: text)
                default:
                    // limit, quota, ct count, meters, NAT...: may stop the rule or act on the packet.
                    match = merge(match, .maybe(key))
                }
                if effect != nil { break }
                if case .no = match { break }
            }
            switch match {
            case .no: continue
            case .yes: out = effect ?? out
            case .maybe(let why): if let effect { out = Outcome.either(effect, out, cause: "\(text): \(why)") }
            }
        }
        return out
    }

    private func evaluateVmap(_ body: JSONValue, _ packet: Packet, _ chain: NftChain, text: String, next: Outcome,
                              onEnd: Outcome, depth: Int) -> Outcome {
        guard let key = body["key"] else { return Outcome(verdicts: Outcome.other, rule: text) }
        let lookup = packet.value(of: key)
        // `tcp dport vmap {...}` on a UDP packet: the hidden protocol match fails first.
        if case .absent = lookup { return next }
        guard case .known(let value) = lookup, let entries = elements(body["data"], chain) else {
            return Outcome(verdicts: Outcome.other, rule: text)
        }
        for entry in entries {
            // A verdict map's elements are [key, verdict] pairs.
            guard let pair = entry.arrayValue, pair.count == 2 else { return Outcome(verdicts: Outcome.other, rule: text) }
            switch value.matches(pair[0]) {
            case .no: continue
            case .maybe: return Outcome(verdicts: Outcome.other, rule: text)
            case .yes:
                guard let (verdict, target) = pair[1].soleKey else { return Outcome(verdicts: Outcome.other, rule: text) }
                switch verdict {
                case "accept": return Outcome(verdicts: Outcome.accept, rule: text)
                case "drop": return Outcome(verdicts: Outcome.drop, rule: text)
                case "reject": return Outcome(verdicts: Outcome.reject, rule: text)
                case "continue": return next
                case "return": return onEnd
                case "jump", "goto":
                    guard let name = target["target"]?.stringValue, let c = ruleset.chain(named: name, besides: chain) else {
                        return Outcome(verdicts: Outcome.other, rule: text)
                    }
                    return evaluate(c, packet, onEnd: verdict == "jump" ? next : onEnd, depth: depth + 1)
                default: return Outcome(verdicts: Outcome.other, rule: text)
                }
            }
        }
        return next
    }

    private func merge(_ a: Match, _ b: Match) -> Match {
        switch (a, b) {
        case (.no, _), (_, .no): return .no
        case (.maybe, _): return a
        case (_, .maybe): return b
        default: return .yes
        }
    }

    /// The elements a right-hand side stands for: a literal, an anonymous set, a named set.
    private func elements(_ right: JSONValue?, _ chain: NftChain) -> [JSONValue]? {
        guard let right else { return nil }
        if case .string(let s) = right, s.hasPrefix("@") {
            return ruleset.sets["\(chain.family) \(chain.table) \(s.dropFirst())"]
        }
        if let set = right["set"] { return set.arrayValue ?? [set] }
        if case .array(let list) = right { return list }
        return [right]
    }

    private func evaluateMatch(_ body: JSONValue, _ packet: Packet, _ chain: NftChain) -> Match {
        guard let left = body["left"], let right = body["right"] else { return .maybe("cannot read") }
        let op = body["op"]?.stringValue ?? "=="
        let value = packet.value(of: left)
        switch value {
        // `tcp dport 22` on a UDP packet: nft adds the protocol check itself, so the rule
        // does not match whatever the operator.
        case .absent: return .no
        case .unknown(let why): return .maybe(why)
        case .known(let v):
            guard let list = elements(right, chain) else { return .maybe("unknown set \(nftText(right))") }
            switch op {
            case "==", "in":
                var any = Match.no
                for e in list {
                    switch v.matches(e) {
                    case .yes: return .yes
                    case .maybe(let why): any = .maybe(why)
                    case .no: break
                    }
                }
                return any
            case "!=":
                var any = Match.yes
                for e in list {
                    switch v.matches(e) {
                    case .yes: return .no
                    case .maybe(let why): any = .maybe(why)
                    case .no: break
                    }
                }
                return any
            case "<", ">", "<=", ">=":
                guard case .number(let n, _) = v, list.count == 1, let bound = list[0].intValue else { return .maybe("comparison") }
                switch op {
                case "<": return n < bound ? .yes : .no
                case ">": return n > bound ? .yes : .no
                case "<=": return n <= bound ? .yes : .no
                default: return n >= bound ? .yes : .no
                }
            default: return .maybe("operator \(op)")
            }
        }
    }
}

/// What the packet carries in one field.
private enum FieldValue {
    /// A number (port, protocol number) or the names it goes by.
    case number(Int, names: [String])
    /// Flag words: the packet has exactly these (`ct state` → ["new"]).
    case flags(Set<String>)
    /// The incoming interface: `lo`, or one that is not `lo` (otherwise unknown).
    case interface(loopback: Bool)

    func matches(_ element: JSONValue) -> Match {
        switch self {
        case .number(let n, let names):
            switch element {
            case .int(let i): return Int(i) == n ? .yes : .no
            case .string(let s):
                if let i = Int(s) { return i == n ? .yes : .no }
                return names.contains(s) ? .yes : (names.isEmpty ? .maybe("name \(s)") : .no)
            default:
                if let range = element["range"]?.arrayValue, range.count == 2 {
                    guard let lo = range[0].intValue, let hi = range[1].intValue else { return .maybe("range") }
                    return lo <= n && n <= hi ? .yes : .no
                }
                if let inner = element["elem"]?["val"] { return matches(inner) }
                return .maybe("element \(nftText(element))")
            }
        case .flags(let have):
            if case .string(let s) = element { return have.contains(s) ? .yes : .no }
            if case .array(let list) = element {
                return list.contains { $0.stringValue.map(have.contains) ?? false } ? .yes : .no
            }
            if let inner = element["elem"]?["val"] { return matches(inner) }
            return .maybe("element \(nftText(element))")
        case .interface(let loopback):
            guard let name = element.stringValue ?? element["elem"]?["val"]?.stringValue else { return .maybe("interface") }
            let namesLo = name == "lo" || (name.hasSuffix("*") && "lo".hasPrefix(name.dropLast()))
            if loopback { return namesLo ? .yes : .no }
            if name == "lo" { return .no }
            // "lo*" also names lo; "e*" or "eth0" name some outside interfaces but maybe not this one.
            return .maybe("depends on the incoming interface")
        }
    }
}

private enum Lookup {
    case known(FieldValue)
    case unknown(String)
    /// The field does not exist in this packet (a TCP header match on UDP, IPv6 on IPv4).
    case absent
}

private struct Packet {
    var proto: TransportProtocol
    var port: UInt16
    var family: PacketFamily
    var overLoopback: Bool

    var protoValue: FieldValue {
        proto == .tcp ? .number(6, names: ["tcp"]) : .number(17, names: ["udp"])
    }

    func value(of expression: JSONValue) -> Lookup {
        guard let (key, body) = expression.soleKey else { return .unknown("cannot read \(nftText(expression))") }
        switch key {
        case "payload":
            guard let p = body["protocol"]?.stringValue, let field = body["field"]?.stringValue else {
                return .unknown("raw payload match")
            }
            switch p {
            case "tcp", "udp", "th", "udplite", "sctp", "dccp":
                if p != "th" && p != proto.rawValue { return .absent }
                if field == "dport" { return .known(.number(Int(port), names: [])) }
                return .unknown("depends on the \(p) \(field)")
            case "ip", "ip6":
                if (p == "ip") != (family == .ipv4) { return .absent }
                if field == "protocol" || field == "nexthdr" { return .known(protoValue) }
                if field == "saddr" { return .unknown("depends on the source address") }
                if field == "daddr" { return .unknown("depends on the destination address") }
                return .unknown("depends on the \(p) \(field)")
            case "icmp", "icmpv6", "igmp", "esp", "ah", "comp": return .absent
            default: return .unknown("depends on \(p) \(field)")
            }
        case "meta":
            switch body["key"]?.stringValue ?? "" {
            case "l4proto": return .known(protoValue)
            case "nfproto": return .known(.number(family == .ipv4 ? 2 : 10, names: [family.rawValue]))
            case "protocol": return .known(.number(family == .ipv4 ? 0x0800 : 0x86dd, names: [family == .ipv4 ? "ip" : "ip6"]))
            case "iifname", "iif": return .known(.interface(loopback: overLoopback))
            case let other: return .unknown("depends on meta \(other)")
            }
        case "ct":
            switch body["key"]?.stringValue ?? "" {
            case "state": return .known(.flags(["new"]))
            // Not DNATed, not SNATed: a packet addressed to this port directly.
            case "status": return .known(.flags([]))
            case "direction": return .known(.flags(["original"]))
            case let other: return .unknown("depends on ct \(other)")
            }
        default:
            return .unknown("cannot evaluate \(nftText(expression))")
        }
    }
}

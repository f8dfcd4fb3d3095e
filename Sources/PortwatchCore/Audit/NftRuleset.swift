// The nftables ruleset as `nft -j list ruleset` prints it, reduced to what the firewall
// verdict needs: the chains (base chains with their hook, type, priority and policy; user
// chains as jump targets), their rules in order, and the named sets' elements. Expressions
// stay JSON (`JSONValue`): the evaluator reads the few shapes it understands and calls the
// rest undecidable, so an unfamiliar expression can never be misread as a match.

/// One chain of the ruleset.
public struct NftChain: Sendable {
    public var family: String
    public var table: String
    public var name: String
    /// `input`, `forward`, ... for base chains; nil for user chains (jump targets).
    public var hook: String?
    /// `filter`, `nat`, `route` for base chains.
    public var type: String?
    public var priority: Int
    /// `accept` or `drop` for base chains.
    public var policy: String?
    public var rules: [NftRule] = []

    /// `inet filter input`: how rules name the chain they sit in.
    public var label: String { "\(family) \(table) \(name)" }
}

/// One rule: its expressions in order (matches, then statements and a verdict).
public struct NftRule: Sendable {
    public var handle: Int
    public var expressions: [JSONValue]
    public var comment: String?
    /// The rule in nft's own words, close to what `nft list ruleset` prints, and its chain:
    /// `tcp dport 22 accept (inet filter input)`. Rendered once: verdicts name it often.
    public var text: String
    /// The same rule as `iptables-nft-save` prints it, for rules iptables-nft made (see
    /// `attachIptablesSave`): the parameters of its `xt` extensions.
    public var iptables: String? = nil

    public init(handle: Int, expressions: [JSONValue], comment: String? = nil, chain: String) {
        self.handle = handle
        self.expressions = expressions
        self.comment = comment
        text = expressions.map(nftText).joined(separator: " ") + " (\(chain))"
    }
}

/// A parsed ruleset.
public struct NftRuleset: Sendable {
    public var chains: [NftChain]
    /// Named sets and maps by `family table name`: their elements as JSON.
    public var sets: [String: [JSONValue]]
    /// Tables in the ruleset (zero: no firewall loaded).
    public var tableCount: Int

    /// Parses the output of `nft -j list ruleset`.
    public init(json bytes: [UInt8]) throws(PortwatchError) {
        guard let root = JSONValue(parsing: bytes), let items = root["nftables"]?.arrayValue else {
            throw PortwatchError.system("nft printed no ruleset JSON (expected an object with \"nftables\")")
        }
        var chains: [NftChain] = []
        var index: [String: Int] = [:]
        var sets: [String: [JSONValue]] = [:]
        var tables = 0
        for item in items {
            if item["table"] != nil { tables += 1; continue }
            if let c = item["chain"] {
                let chain = NftChain(family: c["family"]?.stringValue ?? "", table: c["table"]?.stringValue ?? "",
                                     name: c["name"]?.stringValue ?? "", hook: c["hook"]?.stringValue,
                                     type: c["type"]?.stringValue, priority: c["prio"]?.intValue ?? 0,
                                     policy: c["policy"]?.stringValue)
                index[chain.label] = chains.count
                chains.append(chain)
                continue
            }
            for kind in ["set", "map"] {
                if let s = item[kind] {
                    let key = "\(s["family"]?.stringValue ?? "") \(s["table"]?.stringValue ?? "") \(s["name"]?.stringValue ?? "")"
                    sets[key] = s["elem"]?.arrayValue ?? []
                }
            }
            if let r = item["rule"] {
                let key = "\(r["family"]?.stringValue ?? "") \(r["table"]?.stringValue ?? "") \(r["chain"]?.stringValue ?? "")"
                guard let at = index[key] else { continue }
                chains[at].rules.append(NftRule(handle: r["handle"]?.intValue ?? 0, expressions: r["expr"]?.arrayValue ?? [],
                                                comment: r["comment"]?.stringValue, chain: key))
            }
        }
        self.chains = chains
        self.sets = sets
        self.tableCount = tables
    }

    /// The chain named `name` in the table of `from`.
    func chain(named name: String, besides from: NftChain) -> NftChain? {
        chains.first { $0.family == from.family && $0.table == from.table && $0.name == name }
    }
}

// MARK: - Reading JSON values

extension JSONValue {
    subscript(key: String) -> JSONValue? {
        if case .object(let members) = self { return members.first { $0.0 == key }?.1 }
        return nil
    }

    var arrayValue: [JSONValue]? { if case .array(let a) = self { return a } else { return nil } }
    var stringValue: String? { if case .string(let s) = self { return s } else { return nil } }
    var intValue: Int? { if case .int(let i) = self { return Int(exactly: i) } else { return nil } }

    /// The only key of a one-member object (nft's `{"accept": null}`, `{"match": {...}}`).
    var soleKey: (String, JSONValue)? {
        if case .object(let members) = self, members.count == 1 { return members[0] }
        return nil
    }
}

// MARK: - Text of expressions

/// An expression as nft writes it, for the `rule` a verdict names.
func nftText(_ value: JSONValue) -> String {
    switch value {
    case .null: return ""
    case .bool(let b): return String(b)
    case .int(let i): return String(i)
    case .double(let d): return String(d)
    case .string(let s): return s
    case .array(let a): return a.map(nftText).joined(separator: ",")
    case .object:
        guard let (key, body) = value.soleKey else { return value.serialized() }
        switch key {
        case "match":
            let op = body["op"]?.stringValue ?? "=="
            let left = body["left"].map(nftText) ?? "?"
            let right = body["right"].map(nftText) ?? "?"
            return op == "==" || op == "in" ? "\(left) \(right)" : "\(left) \(op) \(right)"
        case "payload":
            if let proto = body["protocol"]?.stringValue, let field = body["field"]?.stringValue { return "\(proto) \(field)" }
            return "@payload"
        case "meta":
            let k = body["key"]?.stringValue ?? "?"
            return ["iifname", "oifname", "iif", "oif", "mark"].contains(k) ? k : "meta \(k)"
        case "ct": return "ct \(body["key"]?.stringValue ?? "?")"
        case "set":
            // Map elements are [key, value] pairs: `22 : accept`.
            let items = (body.arrayValue ?? [body]).map { e -> String in
                if let pair = e.arrayValue, pair.count == 2 { return "\(nftText(pair[0])) : \(nftText(pair[1]))" }
                return nftText(e)
            }
            return "{ " + items.joined(separator: ", ") + " }"
        case "range": return (body.arrayValue ?? []).map(nftText).joined(separator: "-")
        case "prefix": return "\(body["addr"].map(nftText) ?? "?")/\(body["len"].map(nftText) ?? "?")"
        case "elem": return body["val"].map(nftText) ?? "?"
        case "counter": return "counter"
        case "log": return "log"
        case "jump", "goto": return "\(key) \(body["target"]?.stringValue ?? "?")"
        case "reject":
            if let type = body["type"]?.stringValue {
                return "reject with \(type)" + (body["expr"]?.stringValue.map { " type \($0)" } ?? "")
            }
            return "reject"
        case "xt": return "xt \(body["type"]?.stringValue ?? "") \"\(body["name"]?.stringValue ?? "?")\""
        case "vmap": return "\(body["key"].map(nftText) ?? "?") vmap \(body["data"].map(nftText) ?? "?")"
        default:
            if case .null = body { return key }
            return key
        }
    }
}

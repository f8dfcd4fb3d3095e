// iptables-nft rules are nftables rules, but their extensions (`-m conntrack`, `-m multiport`,
// `-j REJECT`) reach the kernel as `xt` expressions whose parameters `nft -j` does not print.
// `iptables-nft-save` prints the same rules, in the same order, with the parameters; pairing
// the two by position gives the evaluator what it needs for the common extensions. Where the
// pairing does not hold (different rule counts), the rules stay as they were: undecidable.

extension NftRuleset {
    /// True when some rule holds an iptables extension (an `xt` expression).
    public var hasIptablesExtensions: Bool {
        chains.contains { c in c.rules.contains { r in r.expressions.contains { $0["xt"] != nil } } }
    }

    /// Pairs the rules of the `ip` (`family` "ip") or `ip6` tables with the lines of
    /// `iptables-nft-save` / `ip6tables-nft-save` output.
    public mutating func attachIptablesSave(_ text: String, family: String) {
        var table = ""
        var lines: [String: [String]] = [:]
        for raw in text.split(separator: "\n") {
            let line = String(raw)
            if line.hasPrefix("*") { table = String(line.dropFirst()); continue }
            guard line.hasPrefix("-A ") else { continue }
            let chain = line.dropFirst(3).prefix { $0 != " " }
            lines["\(table) \(chain)", default: []].append(line)
        }
        for i in chains.indices where chains[i].family == family {
            guard let saved = lines["\(chains[i].table) \(chains[i].name)"], saved.count == chains[i].rules.count else { continue }
            for j in chains[i].rules.indices {
                chains[i].rules[j].iptables = saved[j]
                chains[i].rules[j].text = "\(saved[j]) (\(chains[i].label))"
            }
        }
    }
}

/// What an iptables match extension says about a new inbound packet to `port`, read from the
/// rule's iptables-save line: nil when it cannot tell.
func iptablesMatch(_ name: String, line: String?, port: UInt16) -> Bool? {
    guard let line else { return nil }
    let words = line.split(separator: " ").map(String.init)
    /// The value after `option` in the part of the line that belongs to `-m name`, and whether
    /// a `!` negates it.
    // `-m state` reaches the kernel as the conntrack extension: either name may be written.
    let modules = name == "conntrack" || name == "state" ? ["conntrack", "state"] : [name]
    func value(_ options: [String]) -> (String, negated: Bool)? {
        guard let m = words.indices.first(where: { words[$0] == "-m" && $0 + 1 < words.count && modules.contains(words[$0 + 1]) }) else {
            return nil
        }
        var i = m + 2
        while i < words.count && words[i] != "-m" && words[i] != "-j" && words[i] != "-g" {
            if options.contains(words[i]), i + 1 < words.count { return (words[i + 1], i > 0 && words[i - 1] == "!") }
            i += 1
        }
        return nil
    }
    switch name {
    case "conntrack", "state":
        guard let (states, negated) = value(["--ctstate", "--state"]) else { return nil }
        let isNew = states.split(separator: ",").contains("NEW")
        return negated ? !isNew : isNew
    case "multiport":
        if let (list, negated) = value(["--dports", "--destination-ports"]) {
            let hit = list.split(separator: ",").contains { item in
                let bounds = item.split(separator: ":").compactMap { UInt16($0) }
                if bounds.count == 2 { return bounds[0] <= port && port <= bounds[1] }
                return bounds.first == port
            }
            return negated ? !hit : hit
        }
        return nil
    default:
        return nil
    }
}

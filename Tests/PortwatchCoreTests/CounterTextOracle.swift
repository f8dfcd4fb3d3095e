@testable import PortwatchCore

// The general parsers of the counter files, every counter of every group: the oracle the
// samplers' own parsers (`parseWantedPairs`, `parseWantedSnmp6`, which keep only what a sample
// uses) are checked against on the live files. Test code: nothing in portwatch reads every counter.
extension SystemCounters {
    /// `Tcp: A B C` / `Tcp: 1 2 3` header-and-values line pairs (snmp, netstat).
    static func parsePairedLines(_ text: String) -> [String: Int64] {
        var out: [String: Int64] = [:]
        let lines = text.split(separator: "\n")
        var i = 0
        while i + 1 < lines.count {
            let names = lines[i].split(separator: " ")
            let values = lines[i + 1].split(separator: " ")
            guard let group = names.first, group.hasSuffix(":"), values.first == group, names.count == values.count else {
                i += 1
                continue
            }
            let prefix = group.dropLast()
            for (name, value) in zip(names.dropFirst(), values.dropFirst()) {
                if let v = Int64(value) { out["\(prefix).\(name)"] = v }
            }
            i += 2
        }
        return out
    }

    /// `Udp6InDatagrams   123` lines (snmp6): stored as `Udp6.InDatagrams`.
    static func parseSnmp6(_ text: String) -> [String: Int64] {
        var out: [String: Int64] = [:]
        for line in text.split(separator: "\n") {
            let parts = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard parts.count == 2, let v = Int64(parts[1]) else { continue }
            let name = parts[0]
            for group in ["Ip6", "Icmp6", "Udp6", "UdpLite6"] where name.hasPrefix(group) {
                out["\(group).\(name.dropFirst(group.count))"] = v
                break
            }
        }
        return out
    }

}

#if canImport(Glibc)
import Glibc
#endif

/// Which ports a scan probes when the user gives no `-p`: the well-known ports and every named one.
public enum ScanPorts {
    /// 1-1024 plus every port /etc/services names for the protocol, ascending.
    public static func defaultPorts(proto: TransportProtocol, services: ServiceDatabase = .system) -> [UInt16] {
        var set = Set<UInt16>(1...1024)
        for port in services.namedPorts(proto: proto) where port != 0 { set.insert(port) }
        return set.sorted()
    }

    /// Where nmap keeps its frequency table on the usual installs.
    public static let frequencyFiles = ["/usr/share/nmap/nmap-services", "/usr/local/share/nmap/nmap-services"]

    /// The `count` most frequently open ports, ascending: ranked by nmap's measured frequencies
    /// when nmap's table is installed (read at run time), otherwise by `fallbackRanking`, then the
    /// default list. The second value names the source, for the output.
    public static func topPorts(_ count: Int, proto: TransportProtocol, files: [String] = frequencyFiles,
                                services: ServiceDatabase = .system) -> (ports: [UInt16], source: String) {
        for path in files {
            if let text = readFileString(path), case let ranked = rankByFrequency(text, proto: proto), !ranked.isEmpty {
                return (Array(ranked.prefix(count)).sorted(), path)
            }
        }
        var ranked: [UInt16] = []
        var seen = Set<UInt16>()
        let fallback = proto == .tcp ? fallbackTCP : fallbackUDP
        for port in fallback + defaultPorts(proto: proto, services: services) + Array(1...65535) where seen.insert(port).inserted {
            ranked.append(port)
            if ranked.count == count { break }
        }
        return (ranked.sorted(), "built-in ranking")
    }

    /// Ports of one protocol from a table in nmap-services format (`name port/proto frequency`),
    /// most frequent first; ties keep the lower port first.
    public static func rankByFrequency(_ text: String, proto: TransportProtocol) -> [UInt16] {
        var rows: [(UInt16, Double)] = []
        let suffix = "/" + proto.rawValue
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            let fields = line.split(whereSeparator: { $0 == "\t" || $0 == " " })
            guard fields.count >= 3, fields[1].hasSuffix(suffix),
                  let port = UInt16(fields[1].dropLast(suffix.count)), port != 0,
                  let frequency = Double(fields[2]) else { continue }
            rows.append((port, frequency))
        }
        rows.sort { $0.1 != $1.1 ? $0.1 > $1.1 : $0.0 < $1.0 }
        return rows.map(\.0)
    }

    /// Services an operator meets most often, ranked by hand (used only without nmap's table).
    static let fallbackTCP: [UInt16] = [
        80, 443, 22, 21, 25, 23, 3389, 110, 445, 139, 143, 53, 135, 3306, 8080, 993, 995, 587, 111, 5432,
        8443, 1723, 6379, 5900, 27017, 8000, 8888, 9200, 11211, 1433, 1521, 2049, 389, 636, 5672, 9090,
        465, 179, 514, 873, 2375, 2376, 6443, 10250, 5000, 3000, 8081, 9100, 9000, 7001,
    ]
    static let fallbackUDP: [UInt16] = [
        53, 123, 161, 137, 67, 68, 69, 500, 514, 520, 1900, 5353, 162, 138, 4500, 1194, 51820, 443, 11211, 111,
        2049, 1812, 1813, 5060, 3478, 427, 631, 19, 7, 9,
    ]
}

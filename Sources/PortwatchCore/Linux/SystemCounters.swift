#if canImport(Glibc)
import Glibc
#endif

/// System-wide network counters from /proc/net/snmp, /proc/net/netstat and /proc/net/snmp6,
/// keyed `Group.Name` (`TcpExt.ListenOverflows`, `Tcp.AttemptFails`, `Udp6.RcvbufErrors`...).
public struct SystemCounters: Sendable, Hashable {
    public var values: [String: Int64]

    public init(values: [String: Int64] = [:]) { self.values = values }

    /// Reads the running system's counters (missing files are skipped).
    public static func read(root: String = "/proc/net") -> SystemCounters {
        var missing: [String] = []
        return read(root: root, missing: &missing)
    }

    /// Reads the counters, listing the files that could not be read (snmp6 is absent without IPv6).
    static func read(root: String, missing: inout [String]) -> SystemCounters {
        var out = SystemCounters()
        for file in ["snmp", "netstat"] {
            if let text = readFileString("\(root)/\(file)") {
                out.values.merge(parsePairedLines(text)) { a, _ in a }
            } else {
                missing.append("\(root)/\(file)")
            }
        }
        if let text = readFileString("\(root)/snmp6") { out.values.merge(parseSnmp6(text)) { a, _ in a } }
        return out
    }

    /// `Tcp: A B C` / `Tcp: 1 2 3` header-and-values line pairs (snmp, netstat).
    public static func parsePairedLines(_ text: String) -> [String: Int64] {
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
    public static func parseSnmp6(_ text: String) -> [String: Int64] {
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

    public subscript(_ key: String) -> Int64 { values[key] ?? 0 }

    /// The counters operators ask about, as deltas since `earlier` (snake_case names for JSON).
    public func errorDeltas(since earlier: SystemCounters) -> [(String, Int64)] {
        func d(_ keys: String...) -> Int64 {
            keys.reduce(0) { $0 + max(0, self[$1] - earlier[$1]) }
        }
        return [
            ("listen_overflows", d("TcpExt.ListenOverflows")),
            ("listen_drops", d("TcpExt.ListenDrops")),
            ("attempt_fails", d("Tcp.AttemptFails")),
            ("estab_resets", d("Tcp.EstabResets")),
            ("out_rsts", d("Tcp.OutRsts")),
            ("retrans_segs", d("Tcp.RetransSegs")),
            ("syncookies_sent", d("TcpExt.SyncookiesSent")),
            ("syn_drops", d("TcpExt.TCPReqQFullDrop")),
            ("timeouts", d("TcpExt.TCPTimeouts")),
            ("udp_no_ports", d("Udp.NoPorts", "Udp6.NoPorts")),
            ("udp_rcvbuf_errors", d("Udp.RcvbufErrors", "Udp6.RcvbufErrors")),
            ("udp_in_errors", d("Udp.InErrors", "Udp6.InErrors")),
            ("udp_sndbuf_errors", d("Udp.SndbufErrors", "Udp6.SndbufErrors")),
        ]
    }
}


/// The /proc/net counter files (snmp, netstat, snmp6) opened once and read again at every
/// sample. An open /proc/net file keeps the network namespace it was opened in: files opened
/// by a thread inside another namespace go on reporting that namespace from any thread, so a
/// sampler of many namespaces reads their counters without entering any of them again.
// @unchecked Sendable: the descriptors are immutable after init; each read rewinds and reads
// its own descriptor, and a sampler (the only user) reads from one task at a time.
final class SystemCounterFiles: @unchecked Sendable {
    private let root: String
    private let snmp: OwnedDescriptor?
    private let netstat: OwnedDescriptor?
    private let snmp6: OwnedDescriptor?

    /// Opens the files under `root` (`/proc/thread-self/net` inside another namespace); a file
    /// that cannot be opened is reported missing at each read.
    init(root: String = "/proc/net") {
        self.root = root
        snmp = try? OwnedDescriptor(opening: "\(root)/snmp")
        netstat = try? OwnedDescriptor(opening: "\(root)/netstat")
        snmp6 = try? OwnedDescriptor(opening: "\(root)/snmp6")
    }

    /// The counters now, with the same notes as `SystemCounterCollector` for missing files.
    func collect() -> Collected<SystemCounters> {
        var out = SystemCounters()
        var missing: [String] = []
        for (name, file) in [("snmp", snmp), ("netstat", netstat)] {
            if let text = Self.reread(file) {
                out.values.merge(SystemCounters.parsePairedLines(text)) { a, _ in a }
            } else {
                missing.append("\(root)/\(name)")
            }
        }
        if let text = Self.reread(snmp6) { out.values.merge(SystemCounters.parseSnmp6(text)) { a, _ in a } }
        let notes = missing.isEmpty ? [] : ["\(missing.joined(separator: ", ")) unreadable: the system counters they hold (listen drops, resets, UDP errors) are missing"]
        return Collected(out, notes: notes)
    }

    /// The file's whole text from its start (a seq_file read from offset 0 is generated anew).
    private static func reread(_ file: OwnedDescriptor?) -> String? {
        guard let file, lseek(file.raw, 0, SEEK_SET) == 0, let bytes = readAll(fd: file.raw, limit: 1 << 20) else { return nil }
        return String(decoding: bytes, as: UTF8.self)
    }
}

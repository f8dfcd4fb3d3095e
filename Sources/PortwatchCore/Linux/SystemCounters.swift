#if canImport(Glibc)
import Glibc
#endif

/// System-wide network counters from /proc/net/snmp, /proc/net/netstat, /proc/net/snmp6 and
/// /proc/net/sockstat(6),
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
            if let bytes = readFileBytes("\(root)/\(file)", limit: 1 << 20) {
                parseWantedPairs(bytes, into: &out.values)
            } else {
                missing.append("\(root)/\(file)")
            }
        }
        if let bytes = readFileBytes("\(root)/snmp6", limit: 1 << 20) { parseWantedSnmp6(bytes, into: &out.values) }
        for file in ["sockstat", "sockstat6"] {
            if let bytes = readFileBytes("\(root)/\(file)", limit: 1 << 16) { parseSockstat(bytes, into: &out.values) }
        }
        return out
    }

    public subscript(_ key: String) -> Int64 { values[key] ?? 0 }

    /// The counters a sample uses (`errorDeltas` and `tcpQuietFingerprint`), by group and name.
    /// Only these are kept: a namespace's netstat alone holds ~150 counters, and building a
    /// string key for each one at every sample of 50 namespaces was most of portwatch's own
    /// per-namespace cost.
    static let wanted: [String: Set<String>] = [
        "Tcp": ["ActiveOpens", "PassiveOpens", "AttemptFails", "EstabResets", "CurrEstab", "InSegs",
                "OutSegs", "RetransSegs", "InErrs", "OutRsts"],
        "TcpExt": ["ListenOverflows", "ListenDrops", "SyncookiesSent", "TCPReqQFullDrop", "TCPTimeouts"],
        "Udp": ["NoPorts", "RcvbufErrors", "InErrors", "SndbufErrors"],
        "Udp6": ["NoPorts", "RcvbufErrors", "InErrors", "SndbufErrors"],
    ]

    /// The wanted counters of `Tcp: A B C` / `Tcp: 1 2 3` header-and-values line pairs (snmp,
    /// netstat), straight from the file's bytes.
    static func parseWantedPairs(_ bytes: [UInt8], into out: inout [String: Int64]) {
        bytes.withUnsafeBufferPointer { buf in
            var lines: [Range<Int>] = []
            var start = 0
            for i in 0..<buf.count where buf[i] == UInt8(ascii: "\n") {
                lines.append(start..<i)
                start = i + 1
            }
            if start < buf.count { lines.append(start..<buf.count) }
            var i = 0
            while i + 1 < lines.count {
                // The group ends the first token ("Tcp:"); groups not wanted are skipped whole.
                let line = lines[i]
                var colon = line.lowerBound
                while colon < line.upperBound && buf[colon] != UInt8(ascii: ":") && buf[colon] != UInt8(ascii: " ") { colon += 1 }
                guard colon < line.upperBound, buf[colon] == UInt8(ascii: ":"), colon > line.lowerBound else {
                    i += 1
                    continue
                }
                let group = string(buf, line.lowerBound..<colon)
                guard let groupNames = wanted[group] else {
                    // Skipped with its values line when that line is the same group's.
                    let next = lines[i + 1]
                    let head = line.lowerBound...colon
                    let paired = next.count > head.count
                        && zip(head, next.lowerBound...).allSatisfy { buf[$0] == buf[$1] }
                    i += paired ? 2 : 1
                    continue
                }
                let names = tokens(buf, line)
                let values = tokens(buf, lines[i + 1])
                guard let first = names.first, let vfirst = values.first, names.count == values.count,
                      equal(buf, first, vfirst) else {
                    i += 1
                    continue
                }
                for (name, value) in zip(names.dropFirst(), values.dropFirst()) {
                    let n = string(buf, name)
                    if groupNames.contains(n), let v = integer(buf, value) { out["\(group).\(n)"] = v }
                }
                i += 2
            }
        }
    }

    /// The wanted counters of `Udp6NoPorts   3` lines (snmp6), stored as `Udp6.NoPorts`.
    static func parseWantedSnmp6(_ bytes: [UInt8], into out: inout [String: Int64]) {
        guard let names = wanted["Udp6"] else { return }
        bytes.withUnsafeBufferPointer { buf in
            var start = 0
            let prefix: [UInt8] = Array("Udp6".utf8)
            for i in 0...buf.count where i == buf.count || buf[i] == UInt8(ascii: "\n") {
                let line = start..<i
                start = i + 1
                // Only the Udp6 lines are wanted ("Udp6NoPorts   3"): others are not split.
                guard line.count > 5, zip(line.prefix(4), prefix).allSatisfy({ buf[$0] == $1 }) else { continue }
                let parts = tokens(buf, line)
                guard parts.count == 2, parts[0].count > 4 else { continue }
                let name = string(buf, (parts[0].lowerBound + 4)..<parts[0].upperBound)
                if names.contains(name), let v = integer(buf, parts[1]) { out["Udp6.\(name)"] = v }
            }
        }
    }

    /// /proc/net/sockstat and sockstat6: `sockets: used N` (sockets of the namespace, all
    /// families), `TCP: inuse N orphan N tw N ...` and `TCP6: inuse N`, stored as
    /// `Sockstat.SocketsUsed`, `Sockstat.TCPInuse`, `Sockstat.TCPTw`, `Sockstat6.TCP6Inuse`, and
    /// `UDP: inuse` / `UDP6: inuse` (bound UDP sockets) as `Sockstat.UDPInuse`, `Sockstat6.UDP6Inuse`.
    static func parseSockstat(_ bytes: [UInt8], into out: inout [String: Int64]) {
        bytes.withUnsafeBufferPointer { buf in
            var start = 0
            for i in 0...buf.count where i == buf.count || buf[i] == UInt8(ascii: "\n") {
                let parts = tokens(buf, start..<i)
                start = i + 1
                guard parts.count >= 3 else { continue }
                let head = string(buf, parts[0])
                func field(_ name: String) -> Int64? {
                    var k = 1
                    while k + 1 < parts.count {
                        if string(buf, parts[k]) == name { return integer(buf, parts[k + 1]) }
                        k += 2
                    }
                    return nil
                }
                switch head {
                case "sockets:": if let v = field("used") { out["Sockstat.SocketsUsed"] = v }
                case "TCP:":
                    if let v = field("inuse") { out["Sockstat.TCPInuse"] = v }
                    if let v = field("tw") { out["Sockstat.TCPTw"] = v }
                case "TCP6:": if let v = field("inuse") { out["Sockstat6.TCP6Inuse"] = v }
                case "UDP:": if let v = field("inuse") { out["Sockstat.UDPInuse"] = v }
                case "UDP6:": if let v = field("inuse") { out["Sockstat6.UDP6Inuse"] = v }
                default: break
                }
            }
        }
    }

    private static func tokens(_ buf: UnsafeBufferPointer<UInt8>, _ line: Range<Int>) -> [Range<Int>] {
        var out: [Range<Int>] = []
        var i = line.lowerBound
        while i < line.upperBound {
            while i < line.upperBound && (buf[i] == UInt8(ascii: " ") || buf[i] == UInt8(ascii: "\t")) { i += 1 }
            let s = i
            while i < line.upperBound && buf[i] != UInt8(ascii: " ") && buf[i] != UInt8(ascii: "\t") { i += 1 }
            if i > s { out.append(s..<i) }
        }
        return out
    }

    private static func equal(_ buf: UnsafeBufferPointer<UInt8>, _ a: Range<Int>, _ b: Range<Int>) -> Bool {
        guard a.count == b.count else { return false }
        return zip(a, b).allSatisfy { buf[$0] == buf[$1] }
    }

    private static func string(_ buf: UnsafeBufferPointer<UInt8>, _ r: Range<Int>) -> String {
        String(decoding: UnsafeBufferPointer(rebasing: buf[r]), as: UTF8.self)
    }

    private static func integer(_ buf: UnsafeBufferPointer<UInt8>, _ r: Range<Int>) -> Int64? {
        var i = r.lowerBound
        var negative = false
        if i < r.upperBound && buf[i] == UInt8(ascii: "-") { negative = true; i += 1 }
        guard i < r.upperBound else { return nil }
        var v: Int64 = 0
        while i < r.upperBound {
            let d = buf[i] &- UInt8(ascii: "0")
            guard d < 10 else { return nil }
            let (m, o1) = v.multipliedReportingOverflow(by: 10)
            let (a, o2) = m.addingReportingOverflow(Int64(d))
            guard !o1 && !o2 else { return nil }
            v = a
            i += 1
        }
        return negative ? -v : v
    }

    /// /proc/net/dev: packets in and out of every interface summed as `Dev.Packets`, their
    /// errors and drops as `Dev.Drops` (each column only grows, so equal sums mean no interface
    /// moved).
    static func parseDev(_ bytes: [UInt8], into out: inout [String: Int64]) {
        bytes.withUnsafeBufferPointer { buf in
            var packets: Int64 = 0
            var drops: Int64 = 0
            var seen = false
            var start = 0
            for i in 0...buf.count where i == buf.count || buf[i] == UInt8(ascii: "\n") {
                let line = start..<i
                start = i + 1
                guard let colon = line.first(where: { buf[$0] == UInt8(ascii: ":") }) else { continue }
                // rx: bytes packets errs drop fifo frame compressed multicast; tx: bytes packets errs drop ...
                let fields = tokens(buf, (colon + 1)..<line.upperBound)
                guard fields.count >= 12 else { continue }
                let n = fields.prefix(12).map { integer(buf, $0) ?? 0 }
                packets &+= n[1] &+ n[9]
                drops &+= n[2] &+ n[3] &+ n[10] &+ n[11]
                seen = true
            }
            if seen {
                out["Dev.Packets"] = packets
                out["Dev.Drops"] = drops
            }
        }
    }

    /// What must move when anything a sample reports of the namespace changes, listeners'
    /// drained queues aside, read from the cheap files alone: every packet or drop on any
    /// interface (TCP segments, UDP datagrams, both families), sockets made (`sockets: used`),
    /// hashed or unhashed (TCP `inuse`: connect, listen, close), bound (UDP `inuse`) and
    /// TIME_WAIT sockets expiring (`tw`). nil when one of them could not be read.
    public var activityFingerprint: [Int64]? {
        var out: [Int64] = []
        for key in ["Dev.Packets", "Dev.Drops", "Sockstat.SocketsUsed", "Sockstat.TCPInuse", "Sockstat.TCPTw",
                    "Sockstat.UDPInuse"] {
            guard let v = values[key] else { return nil }
            out.append(v)
        }
        // Without IPv6 there is no sockstat6 and no IPv6 socket to miss.
        out.append(values["Sockstat6.TCP6Inuse"] ?? -1)
        out.append(values["Sockstat6.UDP6Inuse"] ?? -1)
        return out
    }

    /// What must move when any TCP socket of the namespace changes in a way a sample reports:
    /// every segment in or out (bytes, states, queues of listeners aside), sockets hashed or
    /// unhashed (connect, close), TIME_WAIT sockets expiring, and sockets created (a later
    /// bind leaves a bound-only socket). nil when a file that holds them could not be read.
    public var tcpQuietFingerprint: [Int64]? {
        let keys = ["Tcp.InSegs", "Tcp.OutSegs", "Tcp.OutRsts", "Tcp.ActiveOpens", "Tcp.PassiveOpens",
                    "Tcp.AttemptFails", "Tcp.EstabResets", "Tcp.CurrEstab", "Tcp.RetransSegs", "Tcp.InErrs",
                    "Sockstat.SocketsUsed", "Sockstat.TCPInuse", "Sockstat.TCPTw"]
        var out: [Int64] = []
        out.reserveCapacity(keys.count + 1)
        for key in keys {
            guard let v = values[key] else { return nil }
            out.append(v)
        }
        // Without IPv6 there is no sockstat6 and no IPv6 socket to miss.
        out.append(values["Sockstat6.TCP6Inuse"] ?? -1)
        return out
    }


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


/// The /proc/net counter files (snmp, netstat, snmp6, sockstat, sockstat6, dev) opened once and read again at every
/// sample. An open /proc/net file keeps the network namespace it was opened in: files opened
/// by a thread inside another namespace go on reporting that namespace from any thread, so a
/// sampler of many namespaces reads their counters without entering any of them again.
// @unchecked Sendable: the descriptors are immutable after init; each read rewinds and reads
// its own descriptor into `buffer`, and a sampler (the only user, also of `lastNetstat`) reads from one task
// at a time.
final class SystemCounterFiles: @unchecked Sendable {
    private let root: String
    private let snmp: OwnedDescriptor?
    private let netstat: OwnedDescriptor?
    private let snmp6: OwnedDescriptor?
    private let sockstat: OwnedDescriptor?
    private let sockstat6: OwnedDescriptor?
    private let dev: OwnedDescriptor?
    private var buffer = [UInt8](repeating: 0, count: 32 * 1024)
    /// The activity fingerprint, the protocol counters (snmp, netstat, snmp6) and the notes at
    /// the last read of the protocol counters.
    private var lastFull: (activity: [Int64], counters: SystemCounters, notes: [String], at: Double)?
    /// snmp's Tcp counters and netstat's wanted counters at the last netstat read.
    private var lastNetstat: (tcp: [String: Int64], values: [String: Int64], at: Double)?

    /// Opens the files under `root` (`/proc/thread-self/net` inside another namespace); a file
    /// that cannot be opened is reported missing at each read.
    init(root: String = "/proc/net") {
        self.root = root
        snmp = try? OwnedDescriptor(opening: "\(root)/snmp")
        netstat = try? OwnedDescriptor(opening: "\(root)/netstat")
        snmp6 = try? OwnedDescriptor(opening: "\(root)/snmp6")
        sockstat = try? OwnedDescriptor(opening: "\(root)/sockstat")
        sockstat6 = try? OwnedDescriptor(opening: "\(root)/sockstat6")
        dev = try? OwnedDescriptor(opening: "\(root)/dev")
    }

    /// The counters now, with the same notes as `SystemCounterCollector` for missing files.
    func collect() -> Collected<SystemCounters> {
        var out = SystemCounters()
        var missing: [String] = []
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        let now = Double(ts.tv_sec)
        // First the cheap files that say whether anything moved at all: sockets made, hashed,
        // bound or in TIME_WAIT, and every interface's packets and drops.
        for file in [sockstat, sockstat6] {
            if let bytes = reread(file) { SystemCounters.parseSockstat(bytes, into: &out.values) }
        }
        if let bytes = reread(dev) { SystemCounters.parseDev(bytes, into: &out.values) }
        let activity = out.activityFingerprint
        // Nothing moved: the protocol counters stand as last read (again at least every 15 s:
        // a retransmission dropped by an output firewall rule moves the Tcp line and no
        // interface, and it is counted late, never lost — counters are cumulative).
        if let last = lastFull, let activity, last.activity == activity, now - last.at < 15 {
            // The last whole read, the cheap files' values being the same (no merge: a copy).
            return Collected(last.counters, notes: last.notes)
        }
        var protocols: [String: Int64] = [:]
        if let bytes = reread(snmp) {
            SystemCounters.parseWantedPairs(bytes, into: &protocols)
        } else {
            missing.append("\(root)/snmp")
        }
        // netstat's TCP counters (listen drops, SYN cookies, timeouts) only move with a segment,
        // and every segment moves snmp's Tcp line: while that line stands still, so do they
        // (read again at least every 15 s all the same: a timeout whose retransmission the
        // host failed to send moves no Tcp counter).
        let tcp = protocols.filter { $0.key.hasPrefix("Tcp.") }
        if let last = lastNetstat, !tcp.isEmpty, last.tcp == tcp, now - last.at < 15 {
            protocols.merge(last.values) { a, _ in a }
        } else if let bytes = reread(netstat) {
            var values: [String: Int64] = [:]
            SystemCounters.parseWantedPairs(bytes, into: &values)
            protocols.merge(values) { a, _ in a }
            lastNetstat = tcp.isEmpty ? nil : (tcp, values, now)
        } else {
            missing.append("\(root)/netstat")
            lastNetstat = nil
        }
        if let bytes = reread(snmp6) { SystemCounters.parseWantedSnmp6(bytes, into: &protocols) }
        out.values.merge(protocols) { a, _ in a }
        let notes = missing.isEmpty ? [] : ["\(missing.joined(separator: ", ")) unreadable: the system counters they hold (listen drops, resets, UDP errors) are missing"]
        lastFull = activity.map { ($0, out, notes, now) }
        return Collected(out, notes: notes)
    }

    /// The file's whole text from its start (a seq_file read from offset 0 is generated anew):
    /// one pread into a reused buffer (these files are a few KiB; a seq_file read fills the
    /// buffer as far as the text goes), the read loop only for a text that fills it.
    private func reread(_ file: OwnedDescriptor?) -> [UInt8]? {
        guard let file else { return nil }
        let got = buffer.withUnsafeMutableBytes { raw in
            (try? syscallRetrying("pread") { pread(file.raw, raw.baseAddress, raw.count, 0) }) ?? -1
        }
        if got < 0 { return nil }
        if got < buffer.count { return Array(buffer[0..<got]) }
        guard lseek(file.raw, 0, SEEK_SET) == 0 else { return nil }
        return readAll(fd: file.raw, limit: 1 << 20)
    }
}

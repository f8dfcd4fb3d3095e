/// A signal as `kill -l` names it: `TERM`, `SIGTERM`, `term`, `15`, `RTMIN+3`, `SIGRTMAX-2`.
public struct SignalName: Sendable, Hashable, CustomStringConvertible {
    /// The signal number.
    public var number: Int32
    /// The name without `SIG` (`TERM`, `RTMIN+3`).
    public var name: String

    /// Linux signal numbers (the same on every architecture portwatch builds for, x86-64 and arm64).
    private static let standard: [(String, Int32)] = [
        ("HUP", 1), ("INT", 2), ("QUIT", 3), ("ILL", 4), ("TRAP", 5), ("ABRT", 6), ("BUS", 7), ("FPE", 8),
        ("KILL", 9), ("USR1", 10), ("SEGV", 11), ("USR2", 12), ("PIPE", 13), ("ALRM", 14), ("TERM", 15),
        ("STKFLT", 16), ("CHLD", 17), ("CONT", 18), ("STOP", 19), ("TSTP", 20), ("TTIN", 21), ("TTOU", 22),
        ("URG", 23), ("XCPU", 24), ("XFSZ", 25), ("VTALRM", 26), ("PROF", 27), ("WINCH", 28), ("IO", 29),
        ("PWR", 30), ("SYS", 31),
    ]
    /// Other names `kill` accepts for the same numbers.
    private static let aliases: [(String, Int32)] = [("POLL", 29), ("IOT", 6), ("CLD", 17)]
    /// glibc keeps 32 and 33 for itself: SIGRTMIN is 34 for every program.
    static let rtMin: Int32 = 34
    static let rtMax: Int32 = 64

    /// Every signal in `kill -l` order, with the names `kill -l` prints.
    public static let all: [SignalName] = {
        var list = standard.map { SignalName(number: $0.1, name: $0.0) }
        for n in rtMin...rtMax { list.append(SignalName(number: n, name: rtName(n))) }
        return list
    }()

    private init(number: Int32, name: String) {
        self.number = number
        self.name = name
    }

    /// `RTMIN`, `RTMIN+1` … `RTMIN+15`, `RTMAX-14` … `RTMAX`, as bash prints them.
    private static func rtName(_ n: Int32) -> String {
        let mid = rtMin + (rtMax - rtMin) / 2
        if n == rtMin { return "RTMIN" }
        if n == rtMax { return "RTMAX" }
        return n <= mid ? "RTMIN+\(n - rtMin)" : "RTMAX-\(rtMax - n)"
    }

    /// Parses a name (any case, with or without SIG), an `RTMIN+n`/`RTMAX-n`, or a number 1-64.
    public init(parsing text: String) throws(PortwatchError) {
        var upper = text.uppercased()
        if upper.hasPrefix("SIG") { upper.removeFirst(3) }
        if let match = (Self.standard + Self.aliases).first(where: { $0.0 == upper }) {
            self = Self.all.first { $0.number == match.1 }!
            return
        }
        if let n = Self.realtime(upper) {
            self = Self.all.first { $0.number == n }!
            return
        }
        if !text.isEmpty, text.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }), text.utf8.count <= 3,
           let n = Int32(text), let known = Self.all.first(where: { $0.number == n }) {
            self = known
            return
        }
        throw usageError("invalid signal '\(text)': use a name kill -l lists (TERM, KILL, HUP, INT, USR1, RTMIN+1, ...) or its number")
    }

    /// `RTMIN`, `RTMIN+n`, `RTMAX`, `RTMAX-n` → the number, when in range.
    private static func realtime(_ upper: String) -> Int32? {
        for (prefix, base, sign) in [("RTMIN", rtMin, Int32(1)), ("RTMAX", rtMax, Int32(-1))] where upper.hasPrefix(prefix) {
            let rest = upper.dropFirst(prefix.count)
            if rest.isEmpty { return base }
            let op: Character = sign > 0 ? "+" : "-"
            guard rest.first == op, let k = Int32(rest.dropFirst()), rest.count <= 3 else { return nil }
            let n = base + sign * k
            return n >= rtMin && n <= rtMax ? n : nil
        }
        return nil
    }

    public var description: String { name }
}

extension SignalName {
    /// SIGTERM, the polite default.
    public static let term = SignalName.all.first { $0.number == 15 }!
}

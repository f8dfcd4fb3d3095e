import PortwatchCore
#if canImport(Glibc)
import Glibc
#endif

/// The namespace a history query asks for (`?netns=` of the API, `portwatch history --netns`).
public enum HistoryNamespace {
    /// The daemon's label (`NetworkNamespace.daemonLabel`) that `text` names, nil for the daemon's
    /// own namespace: `host`; a name from /run/netns; `net:[INODE]`; or `pid:PID`, the namespace
    /// a process on this host is in now. Anything else is a usage error naming `option`.
    public static func parse(_ text: String, option: String, procRoot: String = "/proc",
                             runDir: String = "/run/netns") throws(PortwatchError) -> String? {
        let expected = "expected host, a name from /run/netns, net:[INODE] or pid:PID"
        if text == "host" { return nil }
        if text.hasPrefix("net:[") && text.hasSuffix("]") {
            let digits = text.dropFirst(5).dropLast()
            guard let inode = UInt64(digits), inode > 0, digits.allSatisfy({ $0 >= "0" && $0 <= "9" }) else {
                throw .usage("\(option) \(shown(text)): \(expected)")
            }
            return "net:[\(inode)]"
        }
        if text.hasPrefix("pid:") {
            guard let pid = Int32(text.dropFirst(4)), pid > 0 else {
                throw .usage("\(option) \(shown(text)): expected pid:PID with a process id")
            }
            var st = stat()
            guard stat("\(procRoot)/\(pid)/ns/net", &st) == 0 else {
                if errno == EACCES || errno == EPERM {
                    throw .permission("\(option) \(text): \(procRoot)/\(pid)/ns/net is not readable — needs root or CAP_SYS_PTRACE")
                }
                throw .usage("\(option) \(text): no process \(pid)")
            }
            var own = stat()
            if stat("\(procRoot)/self/ns/net", &own) == 0 && own.st_ino == st.st_ino { return nil }
            let inode = UInt64(st.st_ino)
            return NamespaceDirectory.named(runDir: runDir).first { $0.inode == inode }?.name ?? "net:[\(inode)]"
        }
        // `ip netns add` takes any file name: no slash, not `.` or `..`, at most 255 bytes.
        guard !text.isEmpty, !text.contains("/"), text != ".", text != "..", text.utf8.count <= 255,
              !text.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) else {
            throw .usage("\(option) \(shown(text)): \(expected)")
        }
        return text
    }

    /// A namespace the history has no samples of, naming (the first ten of) those it has.
    static func unknown(_ label: String, stored: [String]) -> PortwatchError {
        let names = ["host"] + stored.sorted()
        let more = names.count > 10 ? ", and \(names.count - 10) more" : ""
        return .usage("no history of network namespace \(shown(label)) (stored: "
                      + names.prefix(10).joined(separator: ", ") + more + ")")
    }

    /// The value as an error may echo it: quoted, short, without control characters.
    private static func shown(_ text: String) -> String {
        var out = ""
        for scalar in text.unicodeScalars.prefix(40) {
            out.unicodeScalars.append(scalar.value < 0x20 || scalar.value == 0x7F ? "?" : scalar)
        }
        return "'" + out + (text.unicodeScalars.count > 40 ? "...'" : "'")
    }
}

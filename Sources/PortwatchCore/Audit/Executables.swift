#if canImport(Glibc)
import Glibc
#endif

/// The executable a process runs (/proc/PID/exe), or nil when it cannot be read (the process
/// is gone, or belongs to another user and we lack CAP_SYS_PTRACE). Drift compares these,
/// not pids: a restarted daemon keeps its executable and changes its pid.
public func executablePath(pid: Int32, proc: String = "/proc") -> String? {
    var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
    let n = readlink("\(proc)/\(pid)/exe", &buffer, buffer.count - 1)
    guard n > 0 else { return nil }
    var path = String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    // An upgraded package leaves running processes on the unlinked old file: same program.
    if path.hasSuffix(" (deleted)") { path.removeLast(" (deleted)".count) }
    return path
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Socket inode → owning processes, as read from /proc/PID/fd, with the owners' details.
public struct ProcessScan: Sendable {
    /// Socket inode → pids holding it, each once, in the order found (ascending in a full scan).
    public var owners: OwnerTable
    /// Details of the pids in `owners`; a pid that exited before its details were read has none.
    public var processes: [Int32: ProcessRecord]
    /// Processes whose /proc/PID/fd could not be read: their sockets stay unattributed.
    public var unreadableProcesses: Int
    /// What kept processes from being inspected, with how many processes each hid (0 when the
    /// count is unknowable, as with `hidepid=invisible`, where hidden processes are not listed).
    public var blocked: [InspectionBlock: Int]
    /// Why the answer may be incomplete, in words for the user; each note stands beside the
    /// others (none replaces another).
    public var notes: [String]

    public init(owners: OwnerTable = [:], processes: [Int32: ProcessRecord] = [:],
                unreadableProcesses: Int = 0, blocked: [InspectionBlock: Int] = [:], notes: [String] = []) {
        self.owners = owners
        self.processes = processes
        self.unreadableProcesses = unreadableProcesses
        self.blocked = blocked
        self.notes = notes
    }

    /// The known processes holding `inode`, in the order they were found.
    public func processes(owning inode: UInt64) -> [ProcessRecord] {
        (owners[inode] ?? []).compactMap { processes[$0] }
    }

    /// The permission problem that may hide an owner, as an error to report (exit 2) when a
    /// question cannot be answered without the hidden processes; nil when nothing was hidden.
    public var permissionProblem: PortwatchError? {
        guard !blocked.isEmpty else { return nil }
        return .permission(blocked.keys.sorted().map { $0.explanation(count: blocked[$0] ?? 0) }.joined(separator: "; "))
    }

    /// Adds a note unless the same words are there already.
    public mutating func addNote(_ note: String) {
        if !notes.contains(note) { notes.append(note) }
    }
}

/// What kept portwatch from reading a process's file descriptors, as the kernel decided it:
/// each says what actually blocked, so the advice fits (root needs no "run as root").
public enum InspectionBlock: Sendable, Hashable, Comparable {
    /// Another user's (or a non-dumpable) process, and portwatch runs without root or CAP_SYS_PTRACE.
    case otherUser
    /// portwatch runs as root but without CAP_SYS_PTRACE (dropped by a container or a unit's
    /// capability bounding set).
    case missingPtraceCapability
    /// The process lives in a user namespace over which ours holds no capability (portwatch
    /// runs inside a container; the process is on the host or in a sibling container).
    case otherUserNamespace
    /// /proc is mounted with this `hidepid=` option: other users' processes are hidden.
    case hiddenByProcMount(String)
    /// Refused for another reason with this errno, with CAP_SYS_PTRACE in the process's user
    /// namespace: a security module's policy (AppArmor, SELinux) or a sandbox's protected process.
    case refused(errno: Int32)

    /// One clause for the user, naming the cause and, where one exists, the remedy.
    public func explanation(count: Int) -> String {
        let n = count == 0 ? "processes" : "\(count) process\(count == 1 ? "" : "es")"
        switch self {
        case .otherUser:
            return "\(n) of other users could not be inspected — needs root or CAP_SYS_PTRACE"
        case .missingPtraceCapability:
            return "\(n) could not be inspected: running as root without CAP_SYS_PTRACE (dropped by the container or service)"
        case .otherUserNamespace:
            return "\(n) in another user namespace could not be inspected (portwatch runs in a container; run it on the host)"
        case .hiddenByProcMount(let option):
            return "\(count == 0 ? "other users' processes" : n) are hidden: /proc is mounted with \(option) — needs root, CAP_SYS_PTRACE or the mount's gid= group"
        case .refused(let code):
            return "\(n) could not be inspected although portwatch holds CAP_SYS_PTRACE (\(errnoName(code)) from the kernel: a security module such as AppArmor or SELinux, or a protected process such as a sandbox's init)"
        }
    }
}

/// `EACCES`, `EPERM`, ... for the errnos a /proc walk meets; the number otherwise.
func errnoName(_ code: Int32) -> String {
    switch code {
    case EACCES: return "EACCES"
    case EPERM: return "EPERM"
    case ENOENT: return "ENOENT"
    case ESRCH: return "ESRCH"
    default: return "errno \(code)"
    }
}

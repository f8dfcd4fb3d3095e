#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// What portwatch may see under one proc root: its own capabilities and user namespace and the
/// mount's `hidepid`, read once per scan, so a refused process can be explained by its real cause.
struct ProcAccess {
    /// CAP_SYS_PTRACE is in our effective set (or, when the set cannot be read, we are root).
    let mayTrace: Bool
    let isRoot: Bool
    /// Our /proc/self/uid_map; another process's differs when it lives in another user namespace.
    let ownUidMap: [UInt8]?
    /// `hidepid=…` when the proc root is a procfs mounted with it.
    let hidepid: String?

    static let capSysPtrace = 19

    init(procfd: Int32, procRoot: String, euid: UInt32 = geteuid()) {
        isRoot = euid == 0
        let status = readFileBytes(at: procfd, "self/status", limit: 64 << 10)
        let capEff = status.flatMap { Self.hexField("CapEff:", in: $0) }
        mayTrace = capEff.map { $0 & (1 << UInt64(Self.capSysPtrace)) != 0 } ?? isRoot
        ownUidMap = readFileBytes(at: procfd, "self/uid_map", limit: 4096)
        hidepid = readFileBytes(at: procfd, "self/mountinfo", limit: 1 << 20)
            .flatMap { Self.hidepidOption(mountinfo: String(decoding: $0, as: UTF8.self), mountPoint: procRoot) }
    }

    /// Why `pid` could not be read, given the errno of the refusal.
    func classify(pid: Int32, errno code: Int32, procfd: Int32) -> InspectionBlock {
        if !mayTrace {
            if let hidepid { return .hiddenByProcMount(hidepid) }
            return isRoot ? .missingPtraceCapability : .otherUser
        }
        if let ownUidMap, let theirs = readFileBytes(at: procfd, "\(pid)/uid_map", limit: 4096), theirs != ownUidMap {
            return .otherUserNamespace
        }
        return .refused(errno: code)
    }

    /// The process list itself is cut down for us: `hidepid=invisible` (2) hides other users'
    /// processes from the listing, so they cannot even be counted as refused.
    var listingIsHidden: Bool {
        guard let hidepid, !mayTrace else { return false }
        return hidepid.hasSuffix("=2") || hidepid.hasSuffix("=invisible")
    }

    /// The `hidepid=` option of the procfs mounted at `mountPoint`, from /proc/self/mountinfo;
    /// nil when it has none or `hidepid=0`/`off`.
    static func hidepidOption(mountinfo: String, mountPoint: String) -> String? {
        for line in mountinfo.split(separator: "\n") {
            // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTIONS
            let fields = line.split(separator: " ")
            guard fields.count >= 10, fields[4] == mountPoint,
                  let dash = fields.firstIndex(of: "-"), dash + 3 < fields.count, fields[dash + 1] == "proc"
            else { continue }
            for option in fields[dash + 3].split(separator: ",") where option.hasPrefix("hidepid=") {
                if option == "hidepid=0" || option == "hidepid=off" { return nil }
                return String(option)
            }
            return nil
        }
        return nil
    }

    /// A hexadecimal field of /proc/PID/status (`CapEff:\t000001ffffffffff`).
    static func hexField(_ key: String, in status: [UInt8]) -> UInt64? {
        let text = String(decoding: status, as: UTF8.self)
        for line in text.split(separator: "\n") where line.hasPrefix(key) {
            return UInt64(line.dropFirst(key.count).drop(while: { $0 == "\t" || $0 == " " }), radix: 16)
        }
        return nil
    }
}

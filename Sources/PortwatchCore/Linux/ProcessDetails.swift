#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

// Name, command line, user, unit and container of one process, from /proc/PID.
extension ProcessScanner {
    static func readRecord(pid: Int32, procfd: Int32, users: inout [UInt32: String]) -> ProcessRecord? {
        guard pid > 0 else { return nil }
        // Gone (ENOENT) or hidden: no details, the pid stays an owner without a record.
        guard let directory = try? OwnedDescriptor(opening: String(pid), relativeTo: procfd, flags: O_RDONLY | O_DIRECTORY)
        else { return nil }
        let dir = directory.raw
        // comm is the one file every live process has; without it the process is gone.
        guard let comm = readFileBytes(at: dir, "comm", limit: 256) else { return nil }
        let name = String(decoding: comm.last == UInt8(ascii: "\n") ? comm.dropLast() : comm[...], as: UTF8.self)

        var command = commandLine(readFileBytes(at: dir, "cmdline") ?? [])
        if command.isEmpty { command = "[\(name)]" }  // kernel threads have no command line

        let uid = readFileBytes(at: dir, "status", limit: 64 << 10).flatMap(realUid(status:))
        var user: String?
        if let uid {
            if let cached = users[uid] {
                user = cached
            } else {
                let looked = userName(uid: uid) ?? String(uid)
                users[uid] = looked
                user = looked
            }
        }

        var unit: String?
        var container: String?
        var identity: ContainerIdentity?
        if let cgroup = readFileBytes(at: dir, "cgroup", limit: 64 << 10) {
            let text = String(decoding: cgroup, as: UTF8.self)
            (unit, container) = parseCgroup(text)
            identity = containerIdentity(cgroup: text)
        }
        var record = ProcessRecord(pid: pid, name: name, user: user, uid: uid, command: command,
                                   unit: unit, container: container ?? identity?.id)
        record.containerRuntime = identity?.runtime
        return record
    }

    /// /proc/PID/cmdline's NUL-separated arguments joined by spaces.
    static func commandLine(_ bytes: [UInt8]) -> String {
        var end = bytes.count
        while end > 0 && bytes[end - 1] == 0 { end -= 1 }
        var joined = Array(bytes[0..<end])
        for i in joined.indices where joined[i] == 0 { joined[i] = UInt8(ascii: " ") }
        return String(decoding: joined, as: UTF8.self)
    }

    /// The real uid: the first number on the `Uid:` line of /proc/PID/status.
    static func realUid(status: [UInt8]) -> UInt32? {
        let key = Array("Uid:".utf8)
        var lineStart = 0
        while lineStart < status.count {
            var lineEnd = lineStart
            while lineEnd < status.count && status[lineEnd] != UInt8(ascii: "\n") { lineEnd += 1 }
            if lineEnd - lineStart > key.count && status[lineStart..<lineStart + key.count].elementsEqual(key) {
                var i = lineStart + key.count
                while i < lineEnd && (status[i] == UInt8(ascii: "\t") || status[i] == UInt8(ascii: " ")) { i += 1 }
                var value: UInt32 = 0
                var digits = 0
                while i < lineEnd, case let d = status[i] &- UInt8(ascii: "0"), d < 10 {
                    let (times, o1) = value.multipliedReportingOverflow(by: 10)
                    let (sum, o2) = times.addingReportingOverflow(UInt32(d))
                    if o1 || o2 { return nil }
                    value = sum
                    digits += 1
                    i += 1
                }
                return digits > 0 ? value : nil
            }
            lineStart = lineEnd + 1
        }
        return nil
    }

    /// The user name of `uid` from the system's user database (NSS), nil when it has none.
    static func userName(uid: UInt32) -> String? {
        var size = 1024
        while size <= 1 << 20 {
            var entry = passwd()
            var result: UnsafeMutablePointer<passwd>?
            var buffer = [CChar](repeating: 0, count: size)
            var name: String?
            let rc = buffer.withUnsafeMutableBufferPointer { buf -> Int32 in
                guard let base = buf.baseAddress else { return ENOMEM }
                let rc = getpwuid_r(uid, &entry, base, buf.count, &result)
                // pw_name points into `buf`: copy it out before the buffer goes away.
                if rc == 0, let found = result, let pwName = found.pointee.pw_name {
                    name = String(cString: pwName)
                }
                return rc
            }
            if rc == ERANGE {
                size *= 4
                continue
            }
            return name
        }
        return nil
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

// The byte-level parsers of the fd walk: directory entries, decimal names, link targets.
// They run once per fd (hundreds of thousands per walk), so they read raw bytes.
extension ProcessScanner {
    /// Numeric entries of the proc root, sorted: processes (threads are not listed there, only looked up).
    static func listPids(procfd: Int32) -> [Int32] {
        // A fresh open file description, so reading it does not move procfd's offset.
        let dirfd = openat(procfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dirfd < 0 { return [] }
        guard let dir = fdopendir(dirfd) else {
            close(dirfd)
            return []
        }
        defer { closedir(dir) }
        var pids: [Int32] = []
        pids.reserveCapacity(1024)
        while let entry = readdir(dir) {
            if let pid = parseDecimal(UnsafeRawPointer(entry) + direntNameOffset), pid > 0 {
                pids.append(pid)
            }
        }
        // /proc lists in pid order already; other roots (tests) may not, and the order decides
        // which owner a targeted scan reports first.
        pids.sort()
        return pids
    }

    /// Where `d_name` sits in `struct dirent` (19 on Linux with glibc).
    static let direntNameOffset = MemoryLayout<dirent>.offset(of: \dirent.d_name) ?? 19

    /// A NUL-terminated decimal name (a pid or an fd number); nil for anything else.
    @inline(__always)
    static func parseDecimal(_ name: UnsafeRawPointer) -> Int32? {
        var value: Int32 = 0
        var i = 0
        while true {
            let c = name.load(fromByteOffset: i, as: UInt8.self)
            if c == 0 { break }
            let d = c &- UInt8(ascii: "0")
            // Ten digits at most; the overflow check covers values past Int32.max.
            guard d < 10, i < 10 else { return nil }
            let (times, o1) = value.multipliedReportingOverflow(by: 10)
            let (sum, o2) = times.addingReportingOverflow(Int32(d))
            if o1 || o2 { return nil }
            value = sum
            i += 1
        }
        return i > 0 ? value : nil
    }

    /// Writes `value` (>= 0) as decimal digits at `out`, returning how many bytes were written.
    @inline(__always)
    static func writeDecimal(_ value: Int32, _ out: UnsafeMutablePointer<CChar>) -> Int {
        var digits: (CChar, CChar, CChar, CChar, CChar, CChar, CChar, CChar, CChar, CChar) = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        var v = value
        var n = 0
        withUnsafeMutableBytes(of: &digits) { raw in
            repeat {
                raw[n] = UInt8(truncatingIfNeeded: v % 10) &+ UInt8(ascii: "0")
                v /= 10
                n += 1
            } while v > 0 && n < 10
            for i in 0..<n { out[i] = CChar(bitPattern: raw[n - 1 - i]) }
        }
        return n
    }

    /// The inode in a `socket:[12345]` link target; nil for any other target (files, pipes, anon inodes).
    @inline(__always)
    static func socketInode(_ link: UnsafeRawBufferPointer) -> UInt64? {
        let n = link.count
        guard n >= 10, link[n - 1] == UInt8(ascii: "]"),
              link[0] == UInt8(ascii: "s"), link[1] == UInt8(ascii: "o"), link[2] == UInt8(ascii: "c"),
              link[3] == UInt8(ascii: "k"), link[4] == UInt8(ascii: "e"), link[5] == UInt8(ascii: "t"),
              link[6] == UInt8(ascii: ":"), link[7] == UInt8(ascii: "[")
        else { return nil }
        var value: UInt64 = 0
        for i in 8..<(n - 1) {
            let d = link[i] &- UInt8(ascii: "0")
            guard d < 10 else { return nil }
            let (times, o1) = value.multipliedReportingOverflow(by: 10)
            let (sum, o2) = times.addingReportingOverflow(UInt64(d))
            if o1 || o2 { return nil }
            value = sum
        }
        return value
    }
}

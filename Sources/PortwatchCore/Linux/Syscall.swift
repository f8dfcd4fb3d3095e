#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// An errno from a named system call; the one place where -1/errno becomes a Swift error.
public struct SystemCallError: Error, CustomStringConvertible, Sendable, Equatable {
    public var call: String
    public var errno: Int32

    public init(_ call: String, errno: Int32) {
        self.call = call
        self.errno = errno
    }

    public var description: String {
        "\(call): \(String(cString: strerror(errno)))"
    }

    /// The same failure as a user-facing error; a permission failure is classified as one but
    /// carries no advice: only the caller knows what would have allowed the call.
    public var asPortwatchError: PortwatchError {
        errno == EPERM || errno == EACCES ? .permission(description) : .system(description)
    }

    /// The same failure as a user-facing error, naming what a permission failure lacks
    /// (`needs: "CAP_NET_ADMIN"` for a destroy-event subscription, `"CAP_NET_RAW"` for a capture).
    public func asPortwatchError(needs privilege: String) -> PortwatchError {
        errno == EPERM || errno == EACCES
            ? .permission("\(description) (needs root or \(privilege))") : .system(description)
    }
}

/// Runs a system call, retrying on EINTR, and turns -1 into a `SystemCallError` naming the call:
/// the one place where -1/errno becomes a Swift error (as swift-system's `valueOrErrno`).
@inline(__always)
@discardableResult
func syscallRetrying<T: FixedWidthInteger>(_ name: @autoclosure () -> String, _ body: () -> T) throws(SystemCallError) -> T {
    while true {
        let result = body()
        if result == -1 {
            let code = Glibc.errno
            if code == EINTR { continue }
            throw SystemCallError(name(), errno: code)
        }
        return result
    }
}

/// A file descriptor that closes itself: whoever holds the last reference owns the close.
final class OwnedDescriptor: Sendable {
    let raw: Int32

    init(_ raw: Int32) { self.raw = raw }

    /// Opens `path` (relative to `directory` when given) with O_CLOEXEC.
    convenience init(opening path: String, relativeTo directory: Int32? = nil, flags: Int32 = O_RDONLY) throws(SystemCallError) {
        let fd = try syscallRetrying("open(\(path))") {
            directory.map { openat($0, path, flags | O_CLOEXEC) } ?? open(path, flags | O_CLOEXEC)
        }
        self.init(fd)
    }

    deinit { close(raw) }
}

/// Reads a whole (small, e.g. /proc) file into bytes; nil when it cannot be opened or read.
public func readFileBytes(_ path: String, limit: Int = 16 << 20) -> [UInt8]? {
    guard let file = try? OwnedDescriptor(opening: path) else { return nil }
    return readAll(fd: file.raw, limit: limit)
}

/// Reads a file relative to a directory descriptor; nil on any failure.
public func readFileBytes(at dirfd: Int32, _ path: String, limit: Int = 1 << 20) -> [UInt8]? {
    guard let file = try? OwnedDescriptor(opening: path, relativeTo: dirfd) else { return nil }
    return readAll(fd: file.raw, limit: limit)
}

func readAll(fd: Int32, limit: Int) -> [UInt8]? {
    var out: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 8192)
    while out.count < limit {
        let read: Result<Int, SystemCallError> = buffer.withUnsafeMutableBytes { raw in
            Result { () throws(SystemCallError) in try syscallRetrying("read") { Glibc.read(fd, raw.baseAddress, raw.count) } }
        }
        // A read that fails part way (a process exiting under /proc/PID) keeps what was read.
        guard case .success(let got) = read else { return out.isEmpty ? nil : out }
        if got == 0 { break }
        out.append(contentsOf: buffer[0..<got])
        if buffer.count < 65536 { buffer = [UInt8](repeating: 0, count: buffer.count * 2) }
    }
    return out
}

/// Reads a whole file as a UTF-8 string (invalid bytes repaired); nil when unreadable.
public func readFileString(_ path: String, limit: Int = 16 << 20) -> String? {
    guard let bytes = readFileBytes(path, limit: limit) else { return nil }
    return String(decoding: bytes, as: UTF8.self)
}

/// True when this process runs with effective uid 0.
public var isRoot: Bool { geteuid() == 0 }

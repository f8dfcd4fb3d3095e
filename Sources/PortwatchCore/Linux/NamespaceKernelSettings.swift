#if canImport(Glibc)
import Glibc
#endif

/// The kernel settings and socket counts portwatch reads beside a dump, for one network
/// namespace: the ephemeral port range (/proc/sys/net/ipv4/ip_local_port_range), which tells a
/// client's port from a service's, and /proc/net/sockstat(6), which sizes the dump's buffer.
/// Both are the namespace's own: /proc/sys/net shows the namespace of the thread that opens it
/// (and /proc/thread-self/net that thread's too). So the files are opened inside the namespace (on the thread that opens its
/// sock_diag socket, see `NamespaceSockets`) and kept; an open file goes on showing that
/// namespace's values from any thread, so each dump re-reads the current ones without entering
/// the namespace again. A file that could not be opened falls back to Linux's defaults.
// @unchecked Sendable: the descriptors never change after init, and every read is a pread at
// offset 0 (no shared file position), so dumps on several threads may read them at once.
public final class NamespaceKernelSettings: @unchecked Sendable {
    private let portRange: OwnedDescriptor?
    private let sockstat: [OwnedDescriptor]

    /// Opens the files of the namespace the calling thread is in.
    public init() {
        portRange = try? OwnedDescriptor(opening: "/proc/sys/net/ipv4/ip_local_port_range")
        // thread-self: /proc/net is the namespace of the process's main thread, not of this one.
        sockstat = ["sockstat", "sockstat6"].compactMap { try? OwnedDescriptor(opening: "/proc/thread-self/net/\($0)") }
    }

    /// The namespace's ephemeral port range now, or Linux's default when unreadable.
    public var ephemeralRange: EphemeralRange {
        portRange.flatMap { Self.read($0) }.flatMap(EphemeralRange.parse) ?? .linuxDefault
    }

    /// TCP (including TIME_WAIT) and UDP sockets in use in the namespace, for sizing a dump.
    public var socketCountHint: Int {
        SockDiagSource.socketCountHint(sockstat.compactMap { Self.read($0) })
    }

    private static func read(_ file: OwnedDescriptor) -> String? {
        var buffer = [UInt8](repeating: 0, count: 4096)
        let got = buffer.withUnsafeMutableBytes { raw in
            (try? syscallRetrying("pread") { pread(file.raw, raw.baseAddress, raw.count, 0) }) ?? -1
        }
        guard got > 0 else { return nil }
        return String(decoding: buffer[0..<got], as: UTF8.self)
    }
}

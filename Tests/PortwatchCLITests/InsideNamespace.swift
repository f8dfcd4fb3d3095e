// Sockets of the test process made inside a network namespace of the test's own: a socket
// keeps the namespace it was made in, so the test can talk to a program that runs in there
// (`ip netns exec`) over that namespace's loopback.

import Foundation
import PortwatchCore
#if canImport(Glibc)
import Glibc
#endif

extension Net {
    /// A TCP client connected to 127.0.0.1:`port` of the network namespace `/run/netns/NAME`.
    /// Made on a thread of core's that enters the namespace and leaves it again
    /// (`NamespaceEntry`), so none of the test's own threads changes namespace.
    static func connect(port: UInt16, inside netns: String) throws -> TestSocket {
        let path = "/run/netns/\(netns)"
        var st = stat()
        guard stat(path, &st) == 0 else { throw SupportError.errno("stat \(path)") }
        let ns = NetworkNamespace(inode: UInt64(st.st_ino), name: netns, path: path)
        let made = NamespaceEntry.forEach([ns]) { _ in Result { () throws -> TestSocket in try Net.connect("127.0.0.1", port: port) } }
        switch made[0] {
        case .failure(let error): throw SupportError("entering \(netns): \(error.message)")
        case .success(let connected): return try connected.get()
        }
    }

    /// Runs `body` inside the network namespace `/run/netns/NAME` (on a thread of core's that
    /// enters it and leaves again), or right here when `netns` is nil: the sockets it makes stay
    /// in that namespace whichever thread uses them afterwards.
    static func inside<T>(_ netns: String?, _ body: () throws -> T) throws -> T {
        guard let netns else { return try body() }
        let path = "/run/netns/\(netns)"
        var st = stat()
        guard stat(path, &st) == 0 else { throw SupportError.errno("stat \(path)") }
        let ns = NetworkNamespace(inode: UInt64(st.st_ino), name: netns, path: path)
        let made = NamespaceEntry.forEach([ns]) { _ in Result { () throws -> T in try body() } }
        switch made[0] {
        case .failure(let error): throw SupportError("entering \(netns): \(error.message)")
        case .success(let result): return try result.get()
        }
    }
}

// Small real-socket helpers for core tests: sockets on loopback that the test process holds,
// closed by `deinit` at the latest. Every wait is bounded by poll(2) with a timeout.

import Testing
#if canImport(Glibc)
import Glibc
#endif

struct SocketFailure: Error, CustomStringConvertible {
    var description: String
    init(_ what: String) { description = "\(what): \(String(cString: strerror(errno)))" }
}

/// One socket of the test process.
final class LoopbackSocket: @unchecked Sendable {
    private(set) var fd: Int32

    init(fd: Int32) { self.fd = fd }
    deinit { close() }

    func close() {
        if fd >= 0 { Glibc.close(fd); fd = -1 }
    }

    /// The local port.
    var port: UInt16 {
        var sin = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &sin) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        return UInt16(bigEndian: sin.sin_port)
    }

    static func tcp(nonBlocking: Bool = false) throws -> LoopbackSocket {
        var type = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        if nonBlocking { type |= Int32(SOCK_NONBLOCK.rawValue) }
        let fd = socket(AF_INET, type, 0)
        if fd < 0 { throw SocketFailure("socket") }
        return LoopbackSocket(fd: fd)
    }

    /// A listener on 127.0.0.1 (port 0: the kernel picks one, inside the ephemeral range).
    static func listener(port: UInt16 = 0, backlog: Int32 = 16) throws -> LoopbackSocket {
        let s = try tcp()
        try s.bind(port)
        if listen(s.fd, backlog) != 0 { throw SocketFailure("listen") }
        return s
    }

    func bind(_ port: UInt16) throws {
        var sin = Self.address(port)
        let rc = withUnsafePointer(to: &sin) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        if rc != 0 { throw SocketFailure("bind \(port)") }
    }

    /// connect(2) to 127.0.0.1:port; returns errno (0 when connected or in progress).
    @discardableResult
    func connect(_ port: UInt16) -> Int32 {
        var sin = Self.address(port)
        let rc = withUnsafePointer(to: &sin) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        return rc == 0 || errno == EINPROGRESS ? 0 : errno
    }

    /// Waits until the socket is writable or failed (a non-blocking connect's end); SO_ERROR.
    func connectResult(timeout: Int32 = 5000) -> Int32 {
        var pfd = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
        _ = poll(&pfd, 1, timeout)
        var error: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length)
        return error
    }

    func accept(timeout: Int32 = 5000) throws -> LoopbackSocket {
        var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&pfd, 1, timeout) == 1 else { throw SocketFailure("accept: nothing to accept") }
        let c = Glibc.accept(fd, nil, nil)
        if c < 0 { throw SocketFailure("accept") }
        return LoopbackSocket(fd: c)
    }

    func sendAll(_ count: Int) throws {
        let chunk = [UInt8](repeating: 7, count: 65536)
        var sent = 0
        for _ in 0..<100_000 where sent < count {
            let n = chunk.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, min($0.count, count - sent), Int32(MSG_NOSIGNAL)) }
            if n < 0 && errno != EINTR { throw SocketFailure("send") }
            if n > 0 { sent += n }
        }
    }

    /// Reads until `count` bytes arrived or 5 s passed; returns how many arrived.
    func receive(_ count: Int) -> Int {
        var buffer = [UInt8](repeating: 0, count: 65536)
        var total = 0
        for _ in 0..<100_000 where total < count {
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&pfd, 1, 5000) == 1 else { break }
            let n = recv(fd, &buffer, buffer.count, 0)
            if n <= 0 { break }
            total += n
        }
        return total
    }

    private static func address(_ port: UInt16) -> sockaddr_in {
        var sin = sockaddr_in()
        sin.sin_family = sa_family_t(AF_INET)
        sin.sin_port = port.bigEndian
        sin.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        return sin
    }
}

/// A TCP port nothing holds, outside the ephemeral range (so no client takes it meanwhile):
/// verified by binding it, then released.
func unusedPort() throws -> UInt16 {
    var state = UInt64(UInt32(getpid())) &* 2_654_435_761 &+ UInt64(time(nil))
    for _ in 0..<200 {
        state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        let port = UInt16(10_000 + (state >> 33) % 20_000)
        guard let s = try? LoopbackSocket.tcp() else { continue }
        if (try? s.bind(port)) != nil { return port }
    }
    throw SocketFailure("no unused port found")
}

// Sockets held by the test process itself.

import Foundation
#if canImport(Glibc)
import Glibc
#endif

// MARK: - Sockets held by the test process

/// A socket the test holds; closed explicitly or when released.
final class TestSocket: @unchecked Sendable {
    private(set) var fd: Int32
    /// The local port (from getsockname).
    let port: UInt16

    init(fd: Int32) {
        self.fd = fd
        self.port = TestSocket.localPort(fd)
    }

    deinit { close() }

    func close() {
        if fd >= 0 { Glibc.close(fd); fd = -1 }
    }

    static func localPort(_ fd: Int32) -> UInt16 {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let rc = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard rc == 0 else { return 0 }
        let family = storage.ss_family
        return withUnsafePointer(to: &storage) { p -> UInt16 in
            if family == sa_family_t(AF_INET6) {
                return p.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { UInt16(bigEndian: $0.pointee.sin6_port) }
            }
            return p.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { UInt16(bigEndian: $0.pointee.sin_port) }
        }
    }

    /// Sends all of `bytes` (blocking socket), or throws.
    func sendAll(_ bytes: [UInt8]) throws {
        var sent = 0
        for _ in 0..<100_000 {
            if sent >= bytes.count { break }
            let n = bytes[sent...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                throw SupportError.errno("send")
            }
            sent += n
        }
    }

    /// Reads until `count` bytes arrived, EOF, or `timeout`; returns how many arrived.
    func read(count: Int, timeout: Double) -> Int {
        var total = 0
        var chunk = [UInt8](repeating: 0, count: 65536)
        let deadline = monotonic() + timeout
        for _ in 0..<100_000 {
            if total >= count { break }
            let remaining = deadline - monotonic()
            if remaining <= 0 { break }
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let n = Glibc.poll(&pfd, 1, Int32(max(1, remaining * 1000)))
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            let got = Glibc.recv(fd, &chunk, min(chunk.count, count - total), Int32(MSG_DONTWAIT))
            if got < 0 && (errno == EINTR || errno == EAGAIN) { continue }
            if got <= 0 { break }
            total += got
        }
        return total
    }

    /// True when the peer closed (a read returns 0) within `timeout`.
    func waitForEOF(timeout: Double) -> Bool {
        var chunk = [UInt8](repeating: 0, count: 4096)
        let deadline = monotonic() + timeout
        for _ in 0..<10_000 {
            let remaining = deadline - monotonic()
            if remaining <= 0 { return false }
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let n = Glibc.poll(&pfd, 1, Int32(max(1, remaining * 1000)))
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return false }
            let got = Glibc.recv(fd, &chunk, chunk.count, Int32(MSG_DONTWAIT))
            if got == 0 { return true }
            if got < 0 && errno != EINTR && errno != EAGAIN { return false }
        }
        return false
    }
}

/// A socket address for a numeric IPv4 or IPv6 literal.
func makeSockaddr(_ address: String, _ port: UInt16) throws -> (storage: sockaddr_storage, length: socklen_t, family: Int32) {
    var storage = sockaddr_storage()
    if address.contains(":") {
        var sin6 = sockaddr_in6()
        sin6.sin6_family = sa_family_t(AF_INET6)
        sin6.sin6_port = port.bigEndian
        guard inet_pton(AF_INET6, address, &sin6.sin6_addr) == 1 else { throw SupportError("bad IPv6 literal \(address)") }
        withUnsafeMutableBytes(of: &storage) { raw in withUnsafeBytes(of: sin6) { raw.copyMemory(from: $0) } }
        return (storage, socklen_t(MemoryLayout<sockaddr_in6>.size), AF_INET6)
    }
    var sin = sockaddr_in()
    sin.sin_family = sa_family_t(AF_INET)
    sin.sin_port = port.bigEndian
    guard inet_pton(AF_INET, address, &sin.sin_addr) == 1 else { throw SupportError("bad IPv4 literal \(address)") }
    withUnsafeMutableBytes(of: &storage) { raw in withUnsafeBytes(of: sin) { raw.copyMemory(from: $0) } }
    return (storage, socklen_t(MemoryLayout<sockaddr_in>.size), AF_INET)
}

private func setIntOption(_ fd: Int32, _ level: Int32, _ name: Int32, _ value: Int32) {
    var v = value
    setsockopt(fd, level, name, &v, socklen_t(MemoryLayout<Int32>.size))
}

private func bindSocket(_ fd: Int32, _ address: String, _ port: UInt16) throws {
    var (storage, length, _) = try makeSockaddr(address, port)
    let rc = withUnsafePointer(to: &storage) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.bind(fd, $0, length) }
    }
    if rc != 0 { throw SupportError.errno("bind \(address) port \(port)") }
}

enum Net {
    /// A TCP listener held by this process on `address` (port 0: the kernel picks) with `backlog`.
    /// IPv6 sockets are v6-only, so `::1` means exactly `::1`.
    static func tcpListener(_ address: String = "127.0.0.1", port: UInt16 = 0, backlog: Int32 = 128,
                            reusePort: Bool = false) throws -> TestSocket {
        let family = address.contains(":") ? AF_INET6 : AF_INET
        let fd = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        if fd < 0 { throw SupportError.errno("socket") }
        if family == AF_INET6 { setIntOption(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, 1) }
        if reusePort { setIntOption(fd, SOL_SOCKET, SO_REUSEPORT, 1) }
        do {
            try bindSocket(fd, address, port)
        } catch {
            Glibc.close(fd)
            throw error
        }
        if listen(fd, backlog) != 0 {
            let e = SupportError.errno("listen")
            Glibc.close(fd)
            throw e
        }
        return TestSocket(fd: fd)
    }

    /// A TCP socket bound to `address`:`port` that neither listens nor connects.
    static func tcpBound(_ address: String, port: UInt16) throws -> TestSocket {
        try bound(address, port: port, type: Int32(SOCK_STREAM.rawValue))
    }

    /// A bound, unconnected UDP socket held by this process.
    static func udpSocket(_ address: String = "127.0.0.1", port: UInt16 = 0) throws -> TestSocket {
        try bound(address, port: port, type: Int32(SOCK_DGRAM.rawValue))
    }

    /// A socket of `type` bound to `address`:`port` (IPv6 sockets v6only).
    private static func bound(_ address: String, port: UInt16, type: Int32) throws -> TestSocket {
        let family = address.contains(":") ? AF_INET6 : AF_INET
        let fd = socket(family, type | Int32(SOCK_CLOEXEC.rawValue), 0)
        if fd < 0 { throw SupportError.errno("socket") }
        if family == AF_INET6 { setIntOption(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, 1) }
        do {
            try bindSocket(fd, address, port)
        } catch {
            Glibc.close(fd)
            throw error
        }
        return TestSocket(fd: fd)
    }

    /// A TCP client connected to `address`:`port`. Blocking (the connection is established when
    /// this returns), or non-blocking (the SYN is sent; the result does not matter).
    /// `from` binds the client's own end first (address and port) instead of letting connect pick;
    /// with `reuseAddress` (SO_REUSEADDR) several clients can bind one source port.
    static func connect(_ address: String = "127.0.0.1", port: UInt16, nonBlocking: Bool = false,
                        from source: (address: String, port: UInt16)? = nil,
                        reuseAddress: Bool = false) throws -> TestSocket {
        var (storage, length, family) = try makeSockaddr(address, port)
        var type = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        if nonBlocking { type |= Int32(SOCK_NONBLOCK.rawValue) }
        let fd = socket(family, type, 0)
        if fd < 0 { throw SupportError.errno("socket") }
        if reuseAddress { setIntOption(fd, SOL_SOCKET, SO_REUSEADDR, 1) }
        if let source {
            do {
                try bindSocket(fd, source.address, source.port)
            } catch {
                Glibc.close(fd)
                throw error
            }
        }
        if !nonBlocking {
            // Loopback answers at once; this only bounds a wedged connect.
            var tv = timeval(tv_sec: 5, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        }
        let rc = withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, length) }
        }
        if rc != 0 && !(nonBlocking && errno == EINPROGRESS) {
            let e = SupportError.errno("connect \(address) port \(port)")
            Glibc.close(fd)
            throw e
        }
        return TestSocket(fd: fd)
    }

    /// Accepts one connection within `timeout`.
    static func accept(_ listener: TestSocket, timeout: Double = 5) throws -> TestSocket {
        var pfd = pollfd(fd: listener.fd, events: Int16(POLLIN), revents: 0)
        let deadline = monotonic() + timeout
        for _ in 0..<1000 {
            let remaining = deadline - monotonic()
            if remaining <= 0 { break }
            let n = Glibc.poll(&pfd, 1, Int32(max(1, remaining * 1000)))
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            let fd = accept4(listener.fd, nil, nil, Int32(SOCK_CLOEXEC.rawValue))
            if fd >= 0 { return TestSocket(fd: fd) }
            if errno != EINTR && errno != EAGAIN { throw SupportError.errno("accept") }
        }
        throw SupportError("accept: nothing to accept within \(timeout)s")
    }

    /// Ports `portwatch free` vouches for: outside the ephemeral range (so no client's
    /// automatic port can share the number, on any local address) and bindable on both
    /// wildcards right now.
    ///
    /// Kernel-picked ports (bind to port 0 on one address) are not enough on a busy host: the
    /// same number can be in use on another loopback address (127.0.0.2:P), and portwatch counts
    /// per port number, so those sockets would show up in exact counts.
    static func freePorts(_ count: Int = 1, udp: Bool = false) throws -> [UInt16] {
        let r = runPortwatch(["free", "--count", "\(count)", "--json"] + (udp ? ["--udp"] : []))
        let data = r.stdout.data(using: .utf8) ?? Data()
        let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any]
        let ports = (object?["ports"] as? [Any])?.compactMap { ($0 as? NSNumber).flatMap { UInt16(exactly: $0.intValue) } } ?? []
        guard r.status == 0, ports.count == count else { throw SupportError("portwatch free --count \(count): \(r)") }
        return ports
    }

    /// Retries `body` with fresh ports from `portwatch free` while a bind races someone else.
    static func onFreePorts<T>(_ count: Int = 1, udp: Bool = false, _ body: ([UInt16]) throws -> T) throws -> T {
        var lastError: Error = SupportError("no attempt")
        for _ in 0..<5 {
            let ports = try freePorts(count, udp: udp)
            do { return try body(ports) } catch { lastError = error }
        }
        throw lastError
    }

    /// A TCP listener on `address` with `backlog`, on a port from `portwatch free`.
    static func tcpListenerOnFreePort(_ address: String = "127.0.0.1", backlog: Int32 = 128) throws -> TestSocket {
        try onFreePorts { try tcpListener(address, port: $0[0], backlog: backlog) }
    }

    /// A TCP port nothing holds: one from `portwatch free`, bound by the test and closed again.
    static func closedPort() throws -> UInt16 {
        let s = try tcpListenerOnFreePort("0.0.0.0", backlog: 1)
        defer { s.close() }
        return s.port
    }

    /// UDP sockets bound on 127.0.0.1 and ::1 on one port from `portwatch free --udp`.
    static func udpPair() throws -> (v4: TestSocket, v6: TestSocket) {
        try onFreePorts(udp: true) { ports in
            let v4 = try udpSocket("127.0.0.1", port: ports[0])
            do {
                return (v4, try udpSocket("::1", port: ports[0]))
            } catch {
                v4.close()
                throw error
            }
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif
// sys/socket.h through the shim: the SOCK_* and MSG_* constants in every build mode.
import CSockDiag

/// What a remote port looks like from here.
public enum RemoteState: String, Sendable, Hashable, Codable {
    /// Something accepted the connection (TCP) or answered (UDP).
    case open
    /// Refused: a TCP reset or an ICMP port-unreachable.
    case closed
    /// No answer before the timeout: a firewall dropping, or (UDP) a silent service.
    case filtered
    /// ICMP host/network unreachable, or no route.
    case unreachable
}

/// The outcome of one connection attempt.
public struct ConnectResult: Sendable, Hashable {
    public var state: RemoteState
    /// The address actually tried.
    public var address: IPAddress
    public var port: UInt16
    /// Seconds until the answer (or until the timeout).
    public var seconds: Double
    /// The errno behind a closed/unreachable answer, for the curious.
    public var errno: Int32?
}

/// Resolves a host (name or literal) to addresses; literals need no DNS.
public func resolveHost(_ host: String) throws(PortwatchError) -> [IPAddress] {
    if let literal = IPAddress(host) { return [literal] }
    var hints = addrinfo()
    hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
    hints.ai_family = AF_UNSPEC
    var result: UnsafeMutablePointer<addrinfo>? = nil
    let rc = getaddrinfo(host, nil, &hints, &result)
    guard rc == 0, let first = result else {
        throw .usage("cannot resolve host '\(host)': \(String(cString: gai_strerror(rc)))")
    }
    defer { freeaddrinfo(first) }
    var out: [IPAddress] = []
    var cursor: UnsafeMutablePointer<addrinfo>? = first
    while let ai = cursor {
        if let sa = ai.pointee.ai_addr {
            if ai.pointee.ai_family == AF_INET {
                sa.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { sin in
                    var a = sin.pointee.sin_addr
                    withUnsafeBytes(of: &a) { if let ip = IPAddress(bytes: $0) { out.append(ip) } }
                }
            } else if ai.pointee.ai_family == AF_INET6 {
                sa.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { sin6 in
                    var a = sin6.pointee.sin6_addr
                    withUnsafeBytes(of: &a) { if let ip = IPAddress(bytes: $0) { out.append(ip) } }
                }
            }
        }
        cursor = ai.pointee.ai_next
    }
    var seen = Set<IPAddress>()
    out = out.filter { seen.insert($0).inserted }
    if out.isEmpty { throw .usage("cannot resolve host '\(host)': no IPv4 or IPv6 address") }
    return out
}

/// A sockaddr for an address and port, handed to `body` with its length.
func withSockaddr<R>(_ address: IPAddress, _ port: UInt16,
                     _ body: (UnsafePointer<sockaddr>, socklen_t) throws -> R) rethrows -> R {
    switch address {
    case .v4:
        var sin = sockaddr_in()
        sin.sin_family = sa_family_t(AF_INET)
        sin.sin_port = port.bigEndian
        address.bytes.withUnsafeBytes { raw in withUnsafeMutableBytes(of: &sin.sin_addr) { $0.copyMemory(from: raw) } }
        return try withUnsafePointer(to: &sin) {
            try $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { try body($0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
    case .v6:
        var sin6 = sockaddr_in6()
        sin6.sin6_family = sa_family_t(AF_INET6)
        sin6.sin6_port = port.bigEndian
        address.bytes.withUnsafeBytes { raw in withUnsafeMutableBytes(of: &sin6.sin6_addr) { $0.copyMemory(from: raw) } }
        return try withUnsafePointer(to: &sin6) {
            try $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { try body($0, socklen_t(MemoryLayout<sockaddr_in6>.size)) }
        }
    }
}

private func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// Classifies a failed connect's errno.
func remoteState(forErrno code: Int32) -> RemoteState? {
    switch code {
    case ECONNREFUSED: return .closed
    case EHOSTUNREACH, ENETUNREACH, EHOSTDOWN, ENETDOWN, EADDRNOTAVAIL: return .unreachable
    case ETIMEDOUT: return .filtered
    default: return nil
    }
}

/// One TCP connect attempt with a deadline: open, closed, filtered or unreachable.
/// A non-blocking connect and poll, so the timeout is ours and not the kernel's SYN retries.
public func probeTCP(_ address: IPAddress, port: UInt16, timeout: Double) throws(PortwatchError) -> ConnectResult {
    let family = address.isV6 ? AF_INET6 : AF_INET
    let fd = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    if fd < 0 { throw SystemCallError("socket", errno: errno).asPortwatchError }
    defer { close(fd) }
    let start = monotonicSeconds()
    let rc = withSockaddr(address, port) { connect(fd, $0, $1) }
    func result(_ state: RemoteState, _ err: Int32?) -> ConnectResult {
        ConnectResult(state: state, address: address, port: port, seconds: monotonicSeconds() - start, errno: err)
    }
    if rc == 0 { return result(.open, nil) }
    let code = errno
    if code != EINPROGRESS {
        if let state = remoteState(forErrno: code) { return result(state, code) }
        throw SystemCallError("connect", errno: code).asPortwatchError
    }
    while true {
        let remaining = timeout - (monotonicSeconds() - start)
        if remaining <= 0 { return result(.filtered, nil) }
        var pfd = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
        let n = poll(&pfd, 1, Int32(max(1, min(remaining * 1000, 2_000_000_000)).rounded(.up)))
        if n < 0 {
            if errno == EINTR { continue }
            throw SystemCallError("poll", errno: errno).asPortwatchError
        }
        if n == 0 { return result(.filtered, nil) }
        var soError: Int32 = 0
        var len = socklen_t(MemoryLayout<Int32>.size)
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &soError, &len)
        if soError == 0 { return result(.open, nil) }
        if let state = remoteState(forErrno: soError) { return result(state, soError) }
        throw SystemCallError("connect", errno: soError).asPortwatchError
    }
}

/// One UDP check: send an empty datagram and wait. An ICMP port-unreachable means closed;
/// a reply means open; silence means filtered (open|filtered, as nmap says).
public func probeUDP(_ address: IPAddress, port: UInt16, timeout: Double, payload: [UInt8] = []) throws(PortwatchError) -> ConnectResult {
    let family = address.isV6 ? AF_INET6 : AF_INET
    let fd = socket(family, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    if fd < 0 { throw SystemCallError("socket", errno: errno).asPortwatchError }
    defer { close(fd) }
    let start = monotonicSeconds()
    func result(_ state: RemoteState, _ err: Int32?) -> ConnectResult {
        ConnectResult(state: state, address: address, port: port, seconds: monotonicSeconds() - start, errno: err)
    }
    if withSockaddr(address, port, { connect(fd, $0, $1) }) != 0 {
        let code = errno
        if let state = remoteState(forErrno: code) { return result(state, code) }
        throw SystemCallError("connect", errno: code).asPortwatchError
    }
    var data = payload
    if send(fd, &data, data.count, 0) < 0 {
        let code = errno
        if let state = remoteState(forErrno: code) { return result(state, code) }
        throw SystemCallError("send", errno: code).asPortwatchError
    }
    var buffer = [UInt8](repeating: 0, count: 2048)
    while true {
        let remaining = timeout - (monotonicSeconds() - start)
        if remaining <= 0 { return result(.filtered, nil) }
        var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let n = poll(&pfd, 1, Int32(max(1, min(remaining * 1000, 2_000_000_000)).rounded(.up)))
        if n < 0 {
            if errno == EINTR { continue }
            throw SystemCallError("poll", errno: errno).asPortwatchError
        }
        if n == 0 { return result(.filtered, nil) }
        let got = recv(fd, &buffer, buffer.count, Int32(MSG_DONTWAIT))
        if got >= 0 { return result(.open, nil) }
        let code = errno
        if code == EAGAIN || code == EINTR { continue }
        if let state = remoteState(forErrno: code) { return result(state, code) }
        throw SystemCallError("recv", errno: code).asPortwatchError
    }
}

/// Whether a local bind to the port would succeed right now, on IPv4 and IPv6 wildcards.
/// The sockets are closed at once; nothing is left bound.
public func canBind(port: UInt16, proto: TransportProtocol) -> Bool {
    tryBind(port: port, proto: proto) == .free
}

/// What binding a port (and, for TCP, listening on it) said.
public enum BindOutcome: Sendable, Equatable {
    /// The bind (and listen) succeeded on every wildcard.
    case free
    /// Something holds the port (EADDRINUSE), or the bind failed for another reason (errno).
    case taken(errno: Int32)
    /// Not ours to bind (EACCES: a privileged port without CAP_NET_BIND_SERVICE, or a policy).
    case denied(errno: Int32)
}

/// Binds the port on the IPv4 and IPv6 wildcards (and listens, for TCP) to see whether a server
/// could; the sockets are closed at once.
public func tryBind(port: UInt16, proto: TransportProtocol) -> BindOutcome {
    let type = proto == .tcp ? Int32(SOCK_STREAM.rawValue) : Int32(SOCK_DGRAM.rawValue)
    for address in [IPAddress.anyV4, IPAddress.anyV6] {
        let fd = socket(address.isV6 ? AF_INET6 : AF_INET, type | Int32(SOCK_CLOEXEC.rawValue), 0)
        if fd < 0 {
            // No IPv6 on this host: judge by IPv4 alone.
            if address.isV6 && (errno == EAFNOSUPPORT) { continue }
            return .taken(errno: errno)
        }
        defer { close(fd) }
        if address.isV6 {
            var one: Int32 = 1
            setsockopt(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &one, socklen_t(MemoryLayout<Int32>.size))
        }
        let rc = withSockaddr(address, port) { bind(fd, $0, $1) }
        if rc != 0 {
            let code = errno
            if address.isV6 && code == EADDRNOTAVAIL { continue }
            return code == EACCES || code == EPERM ? .denied(errno: code) : .taken(errno: code)
        }
        // Binding alone does not conflict with connected TCP sockets using the port
        // everywhere; listen() is the test a server will face.
        if proto == .tcp && listen(fd, 1) != 0 { return .taken(errno: errno) }
    }
    return .free
}

/// The lowest port an unprivileged process may bind (net.ipv4.ip_unprivileged_port_start).
public func unprivilegedPortStart() -> Int? {
    readFileString("/proc/sys/net/ipv4/ip_unprivileged_port_start", limit: 64)
        .flatMap { Int($0.split(whereSeparator: { $0 == "\n" || $0 == " " }).first ?? "") }
}

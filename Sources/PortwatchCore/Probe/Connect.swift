#if canImport(Glibc)
import Glibc
#endif
// sys/socket.h through the shim: the SOCK_* and MSG_* constants in every build mode.
import CSockDiag

/// What a remote port looks like from here.
public enum RemoteState: String, Sendable, Hashable, Codable, CaseIterable {
    /// Something accepted the connection (TCP) or answered (UDP).
    case open
    /// UDP only: no answer and no refusal before the timeout. A silent service and a firewall
    /// that drops look the same (nmap's `open|filtered`).
    case openFiltered = "open|filtered"
    /// Refused: a TCP reset or an ICMP port-unreachable.
    case closed
    /// TCP: no answer before the timeout (a firewall dropping).
    case filtered
    /// No route (unreachable, prohibit or blackhole route), or an ICMP host/network unreachable.
    case unreachable

    /// How much an answer tells, for combining the answers of several addresses of one host:
    /// any address that accepts makes the host open; a refusal beats silence, silence beats no route.
    var strength: Int {
        switch self {
        case .open: return 4
        case .openFiltered: return 3
        case .closed: return 2
        case .filtered: return 1
        case .unreachable: return 0
        }
    }
}

/// An address to connect to: an IP address and, for link-local IPv6, the interface it is on.
public struct RemoteAddress: Sendable, Hashable, CustomStringConvertible {
    public var ip: IPAddress
    /// The interface index for a scoped (link-local) IPv6 address; 0 when none.
    public var scopeID: UInt32
    /// The zone as written (`eth0` or `2`), for display.
    public var zone: String?

    /// An address, with the interface index and name of its zone when it has one.
    public init(_ ip: IPAddress, scopeID: UInt32 = 0, zone: String? = nil) {
        self.ip = ip
        self.scopeID = scopeID
        self.zone = zone
    }

    /// `10.0.0.1`, `fd00::2`, `fe80::1%eth0`.
    public var description: String { zone.map { "\(ip)%\($0)" } ?? ip.description }

    /// fe80::/10: needs a zone to be reachable.
    var isLinkLocalV6: Bool {
        if case .v6(let high, _) = ip { return high >> 54 == 0x3fa }
        return false
    }
}

/// The outcome of one connection attempt to one address.
public struct ConnectResult: Sendable, Hashable {
    public var state: RemoteState
    /// The address actually tried.
    public var address: RemoteAddress
    public var port: UInt16
    /// Seconds until the answer (or until the timeout), from just before `connect()`.
    public var seconds: Double
    /// Seconds from the return of `connect()` (the SYN sent) until the answer: what nping
    /// reports as the rtt. On loopback and veth the kernel completes the handshake inside
    /// `connect()` itself, so this is much shorter than `seconds` there; across a real network
    /// the two differ by the syscall's few microseconds.
    public var afterSend: Double = 0
    /// The errno behind a closed or unreachable answer.
    public var errno: Int32?
    /// Why, in words, when the answer came from an error (`no route`, `blackhole route`, ...).
    public var reason: String?
}

/// The remote verdict for one port of one host: every address tried at once, one rule to combine them.
public struct RemoteCheck: Sendable, Hashable {
    public var proto: TransportProtocol
    public var port: UInt16
    /// The host as given (a name or a literal).
    public var host: String
    /// The combined answer (see `RemoteState.strength`).
    public var state: RemoteState
    /// The attempt behind the answer.
    public var decisive: ConnectResult
    /// Every address's attempt, in resolver order.
    public var attempts: [ConnectResult]
}

/// Probes one port on every address of a host at once, within `timeout` seconds in all, and
/// combines the answers: open if any address accepts (or answers, for UDP), else the strongest
/// answer among them (open|filtered, closed, filtered, unreachable). `check` and `wait` both use it.
public func checkRemote(host: String, addresses: [RemoteAddress], proto: TransportProtocol, port: UInt16,
                        timeout: Double, payload: [UInt8] = []) throws(PortwatchError) -> RemoteCheck {
    let attempts = try connectAll(addresses, proto: proto, port: port, timeout: timeout, payload: payload)
    guard var decisive = attempts.first else { throw .usage("no address to check for host '\(host)'") }
    for attempt in attempts.dropFirst() where attempt.state.strength > decisive.state.strength {
        decisive = attempt
    }
    return RemoteCheck(proto: proto, port: port, host: host, state: decisive.state, decisive: decisive, attempts: attempts)
}

/// One TCP connect attempt with a deadline: open, closed, filtered or unreachable.
public func probeTCP(_ address: RemoteAddress, port: UInt16, timeout: Double) throws(PortwatchError) -> ConnectResult {
    try connectAll([address], proto: .tcp, port: port, timeout: timeout, payload: [])[0]
}

/// One UDP check: send a datagram (empty by default) and wait. A reply means open, an ICMP
/// port-unreachable closed, silence open|filtered.
public func probeUDP(_ address: RemoteAddress, port: UInt16, timeout: Double, payload: [UInt8] = []) throws(PortwatchError) -> ConnectResult {
    try connectAll([address], proto: .udp, port: port, timeout: timeout, payload: payload)[0]
}

// MARK: - Name resolution

/// Resolves a host (name or literal, `fe80::1%eth0` included) to addresses, giving up after
/// `timeout` seconds: the system resolver has its own retries (5 s × 2 by default), which a
/// `--timeout 1s` must not wait for.
public func resolveHost(_ host: String, timeout: Double = 5) throws(PortwatchError) -> [RemoteAddress] {
    if let percent = host.firstIndex(of: "%") {
        let zone = String(host[host.index(after: percent)...])
        guard let ip = IPAddress(String(host[..<percent])), ip.isV6 else {
            throw .usage("invalid host '\(host)': a zone (%\(zone)) only follows an IPv6 address")
        }
        let index = zone.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") })
            ? UInt32(zone) ?? 0 : if_nametoindex(zone)
        guard index != 0 else { throw .usage("invalid host '\(host)': no interface '\(zone)' here") }
        return [RemoteAddress(ip, scopeID: index, zone: zone)]
    }
    if let literal = IPAddress(host) {
        let address = RemoteAddress(literal)
        if address.isLinkLocalV6 {
            throw .usage("link-local host '\(host)' needs its interface: write \(host)%IFACE (e.g. \(host)%eth0)")
        }
        return [address]
    }
    let outcome = BlockingCall.run(timeout: timeout) { getAddresses(host) }
    switch outcome {
    case nil:
        throw .usage("cannot resolve host '\(host)': no answer from the resolver within \(formatDuration(.milliseconds(Int64(timeout * 1000))))")
    case .failure(let error)?:
        throw error
    case .success(let addresses)?:
        return addresses
    }
}

/// getaddrinfo, both families, duplicates removed, in resolver order.
private func getAddresses(_ host: String) -> Result<[RemoteAddress], PortwatchError> {
    var hints = addrinfo()
    hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
    hints.ai_family = AF_UNSPEC
    var result: UnsafeMutablePointer<addrinfo>? = nil
    let rc = getaddrinfo(host, nil, &hints, &result)
    guard rc == 0, let first = result else {
        return .failure(.usage("cannot resolve host '\(host)': \(String(cString: gai_strerror(rc)))"))
    }
    defer { freeaddrinfo(first) }
    var out: [RemoteAddress] = []
    var cursor: UnsafeMutablePointer<addrinfo>? = first
    while let ai = cursor {
        if let sa = ai.pointee.ai_addr {
            if ai.pointee.ai_family == AF_INET {
                sa.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { sin in
                    var a = sin.pointee.sin_addr
                    withUnsafeBytes(of: &a) { if let ip = IPAddress(bytes: $0) { out.append(RemoteAddress(ip)) } }
                }
            } else if ai.pointee.ai_family == AF_INET6 {
                sa.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { sin6 in
                    var a = sin6.pointee.sin6_addr
                    let scope = sin6.pointee.sin6_scope_id
                    withUnsafeBytes(of: &a) { if let ip = IPAddress(bytes: $0) { out.append(RemoteAddress(ip, scopeID: scope)) } }
                }
            }
        }
        cursor = ai.pointee.ai_next
    }
    var seen = Set<RemoteAddress>()
    out = out.filter { seen.insert($0).inserted }
    if out.isEmpty { return .failure(.usage("cannot resolve host '\(host)': no IPv4 or IPv6 address")) }
    return .success(out)
}

// MARK: - Connecting

/// A sockaddr for an address and port, handed to `body` with its length.
func withSockaddr<R>(_ address: IPAddress, _ port: UInt16, scopeID: UInt32 = 0,
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
        sin6.sin6_scope_id = scopeID
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

/// What an errno from connect, send or recv says about the remote port; nil when it says
/// nothing about the remote side (a local failure, reported as an error).
func remoteAnswer(forErrno code: Int32) -> (RemoteState, String)? {
    switch code {
    case ECONNREFUSED: return (.closed, "refused")
    case EHOSTUNREACH: return (.unreachable, "host unreachable")
    case ENETUNREACH: return (.unreachable, "network unreachable")
    case EHOSTDOWN: return (.unreachable, "host down")
    case ENETDOWN: return (.unreachable, "network down")
    case EADDRNOTAVAIL: return (.unreachable, "no local address to reach it from")
    // A `prohibit` route answers EACCES, an output firewall rule EPERM: the path is closed to us,
    // whatever our privileges.
    case EACCES, EPERM: return (.unreachable, "administratively prohibited (a prohibit route or a firewall rule)")
    // A `blackhole` route.
    case EINVAL: return (.unreachable, "no route (blackhole route)")
    case ETIMEDOUT: return (.filtered, "timed out")
    default: return nil
    }
}

/// One address's attempt while it is pending.
private struct Attempt {
    var address: RemoteAddress
    var fd: Int32 = -1
    /// When this address's connect (or send) was issued: its time is its own, not the batch's
    /// (a probe's latency is the connect alone, as nping measures it).
    var started: Double = 0
    /// When `connect()` (or the UDP send) returned.
    var sent: Double = 0
    var result: ConnectResult?
}

/// Starts a non-blocking attempt on every address, then polls them together until each has
/// answered, one is open, or the deadline passes: the timeout is ours, not the kernel's SYN retries.
///
/// Everything that allocates (sockets, the poll set, the UDP receive buffer) is made before the
/// first `connect()`, and the poll set is reused across wake-ups (an answered address's entry is
/// set to fd -1, which poll skips): between a `connect()` returning and `poll()` seeing the answer
/// only the clock read and the poll call run, so the latency is the network's, not our bookkeeping's.
private func connectAll(_ addresses: [RemoteAddress], proto: TransportProtocol, port: UInt16, timeout: Double,
                        payload: [UInt8]) throws(PortwatchError) -> [ConnectResult] {
    let start = monotonicSeconds()
    var attempts = addresses.map { Attempt(address: $0) }
    defer { for a in attempts where a.fd >= 0 { close(a.fd) } }
    func finish(_ i: Int, _ state: RemoteState, errno code: Int32? = nil, reason: String? = nil, at time: Double? = nil) {
        let now = time ?? monotonicSeconds()
        attempts[i].result = ConnectResult(state: state, address: attempts[i].address, port: port,
                                           seconds: now - attempts[i].started,
                                           afterSend: now - max(attempts[i].sent, attempts[i].started),
                                           errno: code, reason: reason)
    }
    func fail(_ i: Int, _ call: String, _ code: Int32, at time: Double? = nil) throws(PortwatchError) {
        guard let (state, reason) = remoteAnswer(forErrno: code) else {
            throw SystemCallError(call, errno: code).asPortwatchError
        }
        finish(i, state, errno: code, reason: reason, at: time)
    }
    let type = proto == .tcp ? Int32(SOCK_STREAM.rawValue) : Int32(SOCK_DGRAM.rawValue)
    for i in attempts.indices {
        let fd = socket(attempts[i].address.ip.isV6 ? AF_INET6 : AF_INET,
                        type | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        if fd < 0 { throw SystemCallError("socket", errno: errno).asPortwatchError }
        attempts[i].fd = fd
    }
    let events = Int16(proto == .tcp ? POLLOUT : POLLIN)
    var fds = attempts.map { pollfd(fd: $0.fd, events: events, revents: 0) }
    var buffer = [UInt8](repeating: 0, count: proto == .udp ? 2048 : 0)
    var data = payload
    var pending = attempts.count
    for i in attempts.indices {
        let fd = attempts[i].fd
        let address = attempts[i].address
        attempts[i].started = monotonicSeconds()
        let rc = withSockaddr(address.ip, port, scopeID: address.scopeID) { connect(fd, $0, $1) }
        let code = errno
        attempts[i].sent = monotonicSeconds()
        if proto == .tcp {
            if rc == 0 { finish(i, .open) } else if code != EINPROGRESS { try fail(i, "connect", code) }
        } else {
            if rc != 0 {
                try fail(i, "connect", code)
            } else {
                if send(fd, &data, data.count, 0) < 0 { try fail(i, "send", errno) }
                attempts[i].sent = monotonicSeconds()
            }
        }
        if attempts[i].result != nil {
            fds[i].fd = -1
            pending -= 1
        }
    }
    var anyOpen = attempts.contains { $0.result?.state == .open }
    while !anyOpen && pending > 0 {
        let remaining = timeout - (monotonicSeconds() - start)
        if remaining <= 0 { break }
        let n = poll(&fds, nfds_t(fds.count), Int32(max(1, min(remaining * 1000, 2_000_000_000)).rounded(.up)))
        if n < 0 {
            if errno == EINTR { continue }
            throw SystemCallError("poll", errno: errno).asPortwatchError
        }
        // The answers were there when poll returned: time them then, not after the reads below.
        let answeredAt = monotonicSeconds()
        if n == 0 { continue }
        for i in fds.indices where fds[i].fd >= 0 && fds[i].revents != 0 {
            fds[i].revents = 0
            if proto == .tcp {
                var soError: Int32 = 0
                var len = socklen_t(MemoryLayout<Int32>.size)
                getsockopt(attempts[i].fd, SOL_SOCKET, SO_ERROR, &soError, &len)
                if soError == 0 { finish(i, .open, at: answeredAt) } else { try fail(i, "connect", soError, at: answeredAt) }
            } else {
                let got = recv(attempts[i].fd, &buffer, buffer.count, Int32(MSG_DONTWAIT))
                if got >= 0 {
                    finish(i, .open, at: answeredAt)
                } else {
                    let code = errno
                    if code == EAGAIN || code == EINTR { continue }
                    try fail(i, "recv", code, at: answeredAt)
                }
            }
            fds[i].fd = -1
            pending -= 1
            if attempts[i].result?.state == .open { anyOpen = true }
        }
    }
    // Silence until the deadline (or an open sibling ended the wait).
    let silent: RemoteState = proto == .tcp ? .filtered : .openFiltered
    for i in attempts.indices where attempts[i].result == nil {
        finish(i, silent, reason: "no answer within the timeout")
    }
    return attempts.compactMap(\.result)
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

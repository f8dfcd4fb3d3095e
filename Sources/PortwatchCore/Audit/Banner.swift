#if canImport(Glibc)
import Glibc
#endif

// A short conversation with a local service, to tell what it really is and whether it asks
// for credentials: connect over loopback (or the listener's own address), optionally send a
// harmless request, read the first bytes. Every step is bounded by one deadline; nothing here
// ever leaves this host.

/// Connects to `address:port` over TCP, sends `request` (if any) and returns up to `limit`
/// bytes of the answer, or nil when nothing came back before `timeout` seconds.
public func readBanner(_ address: IPAddress, port: UInt16, request: [UInt8]? = nil, timeout: Double = 0.5,
                       limit: Int = 256) -> [UInt8]? {
    let fd = socket(address.isV6 ? AF_INET6 : AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    let deadline = bannerClock() + timeout
    let started = withSockaddr(address, port) { connect(fd, $0, $1) }
    if started != 0 && errno != EINPROGRESS { return nil }
    guard waitFor(fd, events: Int16(POLLOUT), until: deadline) else { return nil }
    var soError: Int32 = 0
    var length = socklen_t(MemoryLayout<Int32>.size)
    guard getsockopt(fd, SOL_SOCKET, SO_ERROR, &soError, &length) == 0, soError == 0 else { return nil }
    if let request {
        let sent = request.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        guard sent == request.count else { return nil }
    }
    var answer: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: limit)
    // A line is enough to tell the service; stop at the first newline or the limit.
    while answer.count < limit && !answer.contains(0x0A) {
        guard waitFor(fd, events: Int16(POLLIN), until: deadline) else { break }
        let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, limit - answer.count, 0) }
        if n <= 0 { break }
        answer += buffer[0..<n]
    }
    return answer.isEmpty ? nil : answer
}

private func waitFor(_ fd: Int32, events: Int16, until deadline: Double) -> Bool {
    for _ in 0..<100 {
        let left = deadline - bannerClock()
        if left <= 0 { return false }
        var p = pollfd(fd: fd, events: events, revents: 0)
        let r = poll(&p, 1, Int32(max(1, left * 1000)))
        if r > 0 { return true }
        if r == 0 { return false }
        if errno != EINTR { return false }
    }
    return false
}

private func bannerClock() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// The first line of a banner as printable text (for reasons and the table).
public func bannerText(_ bytes: [UInt8]) -> String {
    let line = bytes.prefix { $0 != 0x0A && $0 != 0x0D }
    return String(decoding: line.map { (0x20..<0x7F).contains($0) ? $0 : UInt8(ascii: "?") }, as: UTF8.self)
}

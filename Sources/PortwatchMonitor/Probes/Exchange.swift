import Foundation
import PortwatchCore
#if canImport(Glibc)
import Glibc
#endif

/// `send`/`expect` over a TCP connection of its own: connect, send the bytes, read until the
/// expression matches, the peer closes, 4 KiB arrived or the timeout passes.
enum Exchange {
    struct Outcome {
        var report: ExpectReport
        /// Why the target is unhealthy, when it is.
        var problem: String?
    }

    /// Most bytes read looking for a match.
    static let readLimit = 4096

    static func run(_ address: RemoteAddress, port: UInt16, send: [UInt8]?, expect: String?, timeout: Double) -> Outcome {
        func failed(_ why: String) -> Outcome {
            Outcome(report: ExpectReport(matched: false, received: ""), problem: why)
        }
        let fd = socket(address.ip.isV6 ? AF_INET6 : AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return failed("send/expect: socket: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        // Blocking calls bounded by the socket timeouts: Linux applies SO_SNDTIMEO to connect too.
        var tv = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - timeout.rounded(.down)) * 1e6))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        let deadline = Date().addingTimeInterval(timeout)
        guard connectTo(fd, address, port: port) == 0 else {
            return failed("send/expect: connect: \(String(cString: strerror(errno)))")
        }
        if var bytes = send, !bytes.isEmpty {
            var sent = 0
            while sent < bytes.count {
                let n = bytes.withUnsafeMutableBytes { Glibc.send(fd, $0.baseAddress! + sent, $0.count - sent, Int32(MSG_NOSIGNAL)) }
                if n < 0 {
                    if errno == EINTR { continue }
                    return failed("send/expect: send: \(String(cString: strerror(errno)))")
                }
                sent += n
            }
        }
        let regex = expect.flatMap { try? Regex($0) }
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 1024)
        while received.count < readLimit && Date() < deadline {
            let n = recv(fd, &buffer, buffer.count, 0)
            if n < 0 {
                if errno == EINTR { continue }
                break
            }
            if n == 0 { break }
            received += buffer[0..<n]
            let text = String(decoding: received, as: UTF8.self)
            if let regex {
                if (try? regex.firstMatch(in: text)) != nil { break }
            } else if received.contains(10) {
                break
            }
        }
        let text = String(decoding: received, as: UTF8.self)
        let line = firstLine(text)
        guard let expect else { return Outcome(report: ExpectReport(matched: true, received: line), problem: nil) }
        let matched = regex.map { (try? $0.firstMatch(in: text)) != nil } ?? false
        return Outcome(report: ExpectReport(matched: matched, received: line),
                       problem: matched ? nil : "expected /\(expect)/, received \(line.isEmpty ? "nothing" : "'\(line)'")")
    }

    /// The first line, control characters escaped, at most 200 characters.
    static func firstLine(_ text: String) -> String {
        // Scalars, not Characters: "\r\n" is one Character and would never equal "\n".
        let line = text.unicodeScalars.prefix { $0 != "\n" }
        var out = ""
        for scalar in line.prefix(200) {
            switch scalar {
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 || scalar.value == 0x7F {
                    out += "\\x" + String(scalar.value, radix: 16)
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out
    }

    private static func connectTo(_ fd: Int32, _ address: RemoteAddress, port: UInt16) -> Int32 {
        let bytes = address.ip.bytes
        if address.ip.isV6 {
            var sin6 = sockaddr_in6()
            sin6.sin6_family = sa_family_t(AF_INET6)
            sin6.sin6_port = port.bigEndian
            sin6.sin6_scope_id = address.scopeID
            withUnsafeMutableBytes(of: &sin6.sin6_addr) { $0.copyBytes(from: bytes) }
            return withUnsafePointer(to: &sin6) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size))
                }
            }
        }
        var sin = sockaddr_in()
        sin.sin_family = sa_family_t(AF_INET)
        sin.sin_port = port.bigEndian
        withUnsafeMutableBytes(of: &sin.sin_addr) { $0.copyBytes(from: bytes) }
        return withUnsafePointer(to: &sin) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
    }
}

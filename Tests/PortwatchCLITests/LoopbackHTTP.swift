import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A plain HTTP/1.1 exchange over loopback, for talking to the daemon and to peers the tests start
/// (Prometheus) without pulling an HTTP client library into the test target.
enum LoopbackHTTP {
    struct Response: CustomStringConvertible {
        var status: Int
        var headers: [String: String]
        var body: String

        var json: [String: Any]? {
            (try? JSONSerialization.jsonObject(with: Data(body.utf8))) as? [String: Any]
        }

        var description: String { "HTTP \(status): \(body.prefix(2000))" }
    }

    /// `GET path` (or `method` with `body`) on 127.0.0.1:`port` (of the network namespace
    /// `/run/netns/NETNS` when given); nil when nothing answered within `timeout`.
    static func request(port: UInt16, _ path: String, method: String = "GET", headers: [String: String] = [:],
                        body: String = "", timeout: Double = 10, netns: String? = nil) -> Response? {
        let connected = netns.map { ns in try? Net.connect(port: port, inside: ns) } ?? (try? Net.connect("127.0.0.1", port: port))
        guard let socket = connected else { return nil }
        defer { socket.close() }
        var head = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nConnection: close\r\n"
        for (k, v) in headers { head += "\(k): \(v)\r\n" }
        if !body.isEmpty || method != "GET" { head += "Content-Length: \(body.utf8.count)\r\n" }
        head += "\r\n" + body
        guard (try? socket.sendAll(Array(head.utf8))) != nil else { return nil }
        guard let bytes = readMessage(socket.fd, timeout: timeout, untilClose: true),
              let (start, headerFields, payload) = split(bytes) else { return nil }
        let parts = start.split(separator: " ")
        guard parts.count >= 2, let status = Int(parts[1]) else { return nil }
        var text = payload
        if headerFields["transfer-encoding"]?.lowercased() == "chunked" { text = dechunk(payload) }
        return Response(status: status, headers: headerFields, body: String(decoding: text, as: UTF8.self))
    }

    /// Reads a message: everything until the peer closes (`untilClose`), or until the headers and
    /// `Content-Length` bytes of body arrived.
    static func readMessage(_ fd: Int32, timeout: Double, untilClose: Bool) -> [UInt8]? {
        var data: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        let deadline = monotonic() + timeout
        for _ in 0..<100_000 {
            if !untilClose, let (_, headers, body) = split(data) {
                let length = Int(headers["content-length"] ?? "0") ?? 0
                if body.count >= length { return data }
            }
            let remaining = deadline - monotonic()
            if remaining <= 0 { return untilClose ? nil : (data.isEmpty ? nil : data) }
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let n = Glibc.poll(&pfd, 1, Int32(max(1, remaining * 1000)))
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { continue }
            let got = Glibc.recv(fd, &chunk, chunk.count, Int32(MSG_DONTWAIT))
            if got < 0 && (errno == EINTR || errno == EAGAIN) { continue }
            if got <= 0 { return data.isEmpty ? nil : data }
            data += chunk[0..<got]
        }
        return data
    }

    /// Start line, lower-cased header names, and body; nil until the header block is complete.
    static func split(_ bytes: [UInt8]) -> (String, [String: String], [UInt8])? {
        let marker: [UInt8] = [13, 10, 13, 10]
        guard bytes.count >= 4, let end = (0...(bytes.count - 4)).first(where: { Array(bytes[$0..<$0 + 4]) == marker }) else {
            return nil
        }
        let lines = String(decoding: bytes[..<end], as: UTF8.self).components(separatedBy: "\r\n")
        var headers: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        return (lines.first ?? "", headers, Array(bytes[(end + 4)...]))
    }

    private static func dechunk(_ bytes: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        var i = 0
        while i < bytes.count {
            guard let lineEnd = (i..<bytes.count - 1).first(where: { bytes[$0] == 13 && bytes[$0 + 1] == 10 }) else { break }
            let sizeText = String(decoding: bytes[i..<lineEnd], as: UTF8.self).split(separator: ";").first ?? ""
            guard let size = Int(sizeText.trimmingCharacters(in: .whitespaces), radix: 16), size > 0 else { break }
            let start = lineEnd + 2
            guard start + size <= bytes.count else { out += bytes[start...]; break }
            out += bytes[start..<start + size]
            i = start + size + 2
        }
        return out
    }
}

/// An HTTP receiver on loopback that records every request body (the alert webhook's target).
final class WebhookReceiver: Sendable {
    private let listener: TestSocket
    private let bodies = Mutex<[String]>([])
    private let stopped = Atomic<Bool>(false)
    private let done = DispatchSemaphore(value: 0)
    let port: UInt16

    init() throws {
        listener = try Net.tcpListener("127.0.0.1")
        port = listener.port
        let thread = Thread { [self] in
            // Bounded: one accept attempt per 0.2 s for at most ten minutes.
            for _ in 0..<3000 where !stopped.load(ordering: .relaxed) {
                guard let client = try? Net.accept(listener, timeout: 0.2) else { continue }
                if let message = LoopbackHTTP.readMessage(client.fd, timeout: 5, untilClose: false),
                   let (_, _, body) = LoopbackHTTP.split(message) {
                    bodies.withLock { $0.append(String(decoding: body, as: UTF8.self)) }
                }
                try? client.sendAll(Array("HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".utf8))
                client.close()
            }
            done.signal()
        }
        thread.start()
    }

    /// The bodies received so far, parsed as JSON objects.
    var received: [[String: Any]] {
        bodies.withLock { $0 }.compactMap { (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any] }
    }

    func stop() {
        stopped.store(true, ordering: .relaxed)
        _ = done.wait(timeout: .now() + 5)
        listener.close()
    }
}

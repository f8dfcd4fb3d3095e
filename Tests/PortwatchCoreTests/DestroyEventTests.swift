import Foundation
import Testing
import PortwatchTestSupport
@testable import PortwatchCore
#if canImport(Glibc)
import Glibc
#endif

/// Opens and closes `count` loopback connections to a listener of our own (client closes first).
private func churn(_ count: Int, payload: Int = 100) throws -> UInt16 {
    let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(listener) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
    let bound = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
    try #require(bound == 0 && listen(listener, 4096) == 0)
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &len) } }
    let data = [UInt8](repeating: 5, count: payload)
    for _ in 0..<count {
        let c = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(c, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        try #require(rc == 0)
        let s = accept(listener, nil, nil)
        _ = data.withUnsafeBytes { send(c, $0.baseAddress, $0.count, 0) }
        var buffer = [UInt8](repeating: 0, count: payload)
        _ = recv(s, &buffer, buffer.count, Int32(MSG_WAITALL))
        close(c)
        close(s)
    }
    return UInt16(bigEndian: addr.sin_port)
}

@Suite(.serialized, .blocking) struct DestroyEventTests {
    @Test(.enabled(if: getuid() == 0, "needs root: the destroy groups need CAP_NET_ADMIN"))
    func closedConnectionsArriveWithTheirFinalCounters() throws {
        let stream = try DestroyEventStream()
        stream.start()
        let port = try churn(20, payload: 1234)
        // Events come from a kernel work queue: give them a moment.
        var mine: [SocketRecord] = []
        for _ in 0..<40 where mine.count < 40 {
            usleep(50_000)
            // (the listener closes too: peer port 0)
            mine += stream.drain().sockets.filter { ($0.local.port == port || $0.peer.port == port) && $0.peer.port != 0 }
        }
        #expect(mine.count == 40)
        let servers = mine.filter { $0.local.port == port }
        #expect(servers.count == 20)
        // Each server socket received 1234 payload bytes, plus the client's FIN.
        #expect(servers.allSatisfy { ($0.tcp?.bytesReceived ?? 0) == 1235 })
        #expect(Set(mine.map(\.cookie)).count == 40)
        stream.stop()
    }

    @Test(.enabled(if: getuid() == 0, "needs root: the destroy groups need CAP_NET_ADMIN"))
    func overflowIsDetectedNotSilent() throws {
        // A tiny buffer and no reader thread while 300 connections close: the kernel must drop
        // events, and the stream must say so.
        let stream = try DestroyEventStream(receiveBuffer: 4096)
        _ = try churn(300)
        // Events come from a kernel work queue: read until the overflow shows (bounded: 40
        // reads 50 ms apart), rather than after a fixed delay.
        var overflows = 0
        var received = 0
        for _ in 0..<40 where overflows == 0 {
            let batch = stream.drain()
            overflows += batch.overflows
            received += batch.sockets.count
            if overflows == 0 { usleep(50_000) }
        }
        #expect(overflows > 0)
        #expect(received < 600)
    }
}

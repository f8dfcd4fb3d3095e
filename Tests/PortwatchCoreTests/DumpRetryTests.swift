import Foundation
import Glibc
import Testing
@testable import PortwatchCore

// The dump's retry and fallback paths, driven through an injected netlink transport that
// replays recorded kernel replies and makes the faults a kernel seldom makes on demand.

/// A kernel end that answers each request with the next scripted reply.
/// @unchecked Sendable: each instance is created and used by one test, on one thread.
final class ScriptedNetlink: NetlinkTransport, @unchecked Sendable {
    enum Step {
        case datagram([UInt8])
        case fail(Int32)
    }
    private var replies: [[Step]]
    private var current: [Step] = []
    private(set) var requests: [[UInt8]] = []
    private(set) var discards = 0

    init(_ replies: [[Step]]) { self.replies = replies }

    func send(_ request: [UInt8]) throws(SystemCallError) {
        requests.append(request)
        current = replies.isEmpty ? [] : replies.removeFirst()
    }

    func receive(into buffer: UnsafeMutableRawBufferPointer) throws(SystemCallError) -> (count: Int, truncated: Bool) {
        guard !current.isEmpty else { throw SystemCallError("recvmsg(sock_diag)", errno: EAGAIN) }
        switch current.removeFirst() {
        case .datagram(let bytes):
            buffer.copyBytes(from: bytes.prefix(buffer.count))
            return (min(bytes.count, buffer.count), bytes.count > buffer.count)
        case .fail(let code):
            throw SystemCallError("recvmsg(sock_diag)", errno: code)
        }
    }

    func discardPending() {
        current = []
        discards += 1
    }

    /// The netlink message type of each request sent (18 TCPDIAG_GETSOCK, 20 SOCK_DIAG_BY_FAMILY).
    var requestTypes: [UInt16] { requests.map { UInt16($0[4]) | UInt16($0[5]) << 8 } }
}

/// The recorded TCP dumps (IPv4, then IPv6), each a list of datagrams ending in NLMSG_DONE.
private func recordedTCPDumps() throws -> [[[UInt8]]] {
    var dumps: [[[UInt8]]] = [[]]
    for datagram in try recordedDatagrams("sockdiag-47001-47002.bin") {
        dumps[dumps.count - 1].append(datagram)
        var ignored: [SocketRecord] = []
        if try datagram.withUnsafeBytes({ try parseInetDiagDatagram($0, proto: .tcp, into: &ignored) }) == .done {
            dumps.append([])
        }
    }
    return Array(dumps.prefix(2))
}

/// The same datagram with NLM_F_DUMP_INTR set on its first message.
private func interrupted(_ datagram: [UInt8]) -> [UInt8] {
    var copy = datagram
    copy[6] |= 0x10
    return copy
}

/// An NLMSG_ERROR datagram carrying -errno.
private func kernelError(_ code: Int32) -> [UInt8] {
    var out: [UInt8] = []
    withUnsafeBytes(of: UInt32(36).littleEndian) { out += $0 }
    withUnsafeBytes(of: UInt16(2).littleEndian) { out += $0 }
    out += [0, 0, 1, 0, 0, 0, 0, 0, 0, 0]
    withUnsafeBytes(of: (-code).littleEndian) { out += $0 }
    out += [UInt8](repeating: 0, count: 16)
    return out
}

private func source(_ netlink: ScriptedNetlink, oneWalk: Bool = false) -> SockDiagSource {
    SockDiagSource(openNetlink: { netlink }, oneWalkTCP: oneWalk)
}

private let tcpQuery = SocketQuery(protocols: [.tcp])

@Suite struct DumpRetries {
    @Test func replayedDumpGivesTheRecordedSockets() throws {
        let dumps = try recordedTCPDumps()
        let netlink = ScriptedNetlink(dumps.map { $0.map(ScriptedNetlink.Step.datagram) })
        let records = try source(netlink).sockets(tcpQuery)
        #expect(records.count == 4)
        #expect(netlink.requestTypes == [20, 20])
    }

    /// NLM_F_DUMP_INTR: the tables changed under the dump; it is started again and the partial
    /// answer is thrown away (no socket twice).
    @Test func interruptedDumpIsRetriedWithoutDuplicates() throws {
        let dumps = try recordedTCPDumps()
        var first = dumps[0].map(ScriptedNetlink.Step.datagram)
        first[first.count - 1] = .datagram(interrupted(dumps[0][dumps[0].count - 1]))
        let netlink = ScriptedNetlink([first] + dumps.map { $0.map(ScriptedNetlink.Step.datagram) })
        let records = try source(netlink).sockets(tcpQuery)
        #expect(records.count == 4)
        #expect(Set(records.map(\.cookie)).count == 4)
        #expect(netlink.requests.count == 3)
        #expect(netlink.discards == 1)
    }

    /// ENOBUFS: the kernel dropped part of the reply; the dump starts again.
    @Test func overrunReceiveBufferIsRetried() throws {
        let dumps = try recordedTCPDumps()
        let netlink = ScriptedNetlink([[.fail(ENOBUFS)]] + dumps.map { $0.map(ScriptedNetlink.Step.datagram) })
        let records = try source(netlink).sockets(tcpQuery)
        #expect(records.count == 4)
        #expect(netlink.requests.count == 3)
    }

    /// A kernel that keeps overrunning: after a bounded number of tries, an error naming the call.
    @Test func persistentOverrunIsAnErrorNamingTheCall() throws {
        let netlink = ScriptedNetlink(Array(repeating: [.fail(ENOBUFS)], count: 10))
        #expect(throws: PortwatchError.self) { try source(netlink).sockets(tcpQuery) }
        do {
            _ = try source(ScriptedNetlink(Array(repeating: [.fail(ENOBUFS)], count: 10))).sockets(tcpQuery)
        } catch {
            #expect(error.kind == .system)
            #expect(error.message.contains("recvmsg(sock_diag)"))
        }
        #expect(netlink.requests.count == SockDiagSource.attemptsPerDump)
    }

    /// A kernel without the one-walk TCP request answers it with an error: ask per family.
    @Test func refusedOneWalkFallsBackToPerFamilyDumps() throws {
        let dumps = try recordedTCPDumps()
        let netlink = ScriptedNetlink([[.datagram(kernelError(EINVAL))]] + dumps.map { $0.map(ScriptedNetlink.Step.datagram) })
        let records = try source(netlink, oneWalk: true).sockets(tcpQuery)
        #expect(records.count == 4)
        #expect(netlink.requestTypes == [18, 20, 20])
    }

    /// Other kernel errors are reported, not retried forever.
    @Test func kernelRefusalIsReported() throws {
        let netlink = ScriptedNetlink([[.datagram(kernelError(EPERM))]])
        do {
            _ = try source(netlink).sockets(tcpQuery)
            Issue.record("a refused dump must throw")
        } catch {
            #expect(error.message.contains("Operation not permitted"))
        }
        #expect(netlink.requests.count == 1)
    }

    /// No sock_diag (the socket cannot be opened): /proc/net is read instead, from the root given.
    @Test func missingSockDiagFallsBackToProcNet() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("portwatch-procnet-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: root) }
        let line = "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000002 00:00000000 00000000     0        0 12345 1 0000000000000000 100 0 0 10 0\n"
        try ("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n" + line)
            .write(to: root.appendingPathComponent("tcp"), atomically: true, encoding: .utf8)
        let chosen = defaultSocketSource(procNet: root.path, openNetlink: { () throws(SystemCallError) -> any NetlinkTransport in
            throw SystemCallError("socket(AF_NETLINK)", errno: EAFNOSUPPORT)
        })
        #expect(chosen.name == "procfs")
        let records = try chosen.sockets(SocketQuery(protocols: [.tcp], families: [.inet]))
        #expect(records.map { $0.local.port } == [8080])
        #expect(defaultSocketSource(SocketSourceChoice(forceProcfs: true)).name == "procfs")
        #expect(defaultSocketSource(openNetlink: { ScriptedNetlink([]) }).name == "sock_diag")
    }
}

@Suite struct SyscallBoundary {
    @Test func interruptedCallsAreRetried() throws {
        var calls = 0
        let result = try syscallRetrying("read(test)") { () -> Int32 in
            calls += 1
            if calls < 3 {
                errno = EINTR
                return -1
            }
            return 7
        }
        #expect(result == 7)
        #expect(calls == 3)
    }

    @Test func failuresCarryTheCallsName() {
        do {
            try syscallRetrying("close(test)") { () -> Int32 in
                errno = EBADF
                return -1
            }
            Issue.record("must throw")
        } catch {
            #expect(error == SystemCallError("close(test)", errno: EBADF))
            #expect(error.description.hasPrefix("close(test): "))
            #expect(error.asPortwatchError.kind == .system)
        }
        // The caller names what a permission failure lacks; without a hint there is no advice.
        let denied = SystemCallError("bind(AF_PACKET)", errno: EPERM)
        #expect(denied.asPortwatchError(needs: "CAP_NET_RAW").message.contains("needs root or CAP_NET_RAW"))
        #expect(!denied.asPortwatchError.message.contains("needs"))
        #expect(denied.asPortwatchError.kind == .permission)
    }

    @Test func ownedDescriptorsCloseThemselves() throws {
        var raw: Int32 = -1
        do {
            let fd = try OwnedDescriptor(opening: "/dev/null")
            raw = fd.raw
            #expect(fcntl(raw, F_GETFD) >= 0)
        }
        #expect(fcntl(raw, F_GETFD) == -1 && errno == EBADF)
        #expect(throws: SystemCallError.self) { try OwnedDescriptor(opening: "/nonexistent/portwatch") }
    }
}

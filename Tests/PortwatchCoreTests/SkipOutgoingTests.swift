// The daemon's lean dump (`SnapshotOptions.skipOutgoing`): the kernel leaves out sockets that
// can only be outgoing, and nothing a local row needs. Real sockets on loopback.

import Testing
#if canImport(Glibc)
import Glibc
#endif
@testable import PortwatchCore

@Suite struct SkipOutgoingTests {
    private let ephemeral = EphemeralRange.system().range

    /// A client of a service port: its socket (ephemeral source, service port as peer) is left
    /// out, the listener and the server side are kept, and the service row is the same.
    @Test func clientSocketIsLeftOutAndTheServiceRowIsUnchanged() throws {
        let listener = try LoopbackSocket.listener(port: try unusedPort())
        let port = listener.port
        let client = try LoopbackSocket.tcp()
        #expect(client.connect(port) == 0)
        let server = try listener.accept()
        defer { client.close(); server.close(); listener.close() }
        try #require(!ephemeral.contains(port) && ephemeral.contains(client.port))

        let full = try PortSnapshot.take(SnapshotOptions(processes: .none))
        let lean = try PortSnapshot.take(SnapshotOptions(processes: .none, skipOutgoing: true))
        func has(_ snapshot: PortSnapshot, local: UInt16, peer: UInt16) -> Bool {
            snapshot.sockets.contains { $0.proto == .tcp && $0.local.port == local && $0.peer.port == peer }
        }
        #expect(has(full, local: client.port, peer: port))
        #expect(!has(lean, local: client.port, peer: port))
        #expect(has(lean, local: port, peer: client.port))
        let row = lean.ports.first { $0.key == PortKey.local(.tcp, port) }
        #expect(row?.listening == true)
        #expect(row?.connections.established == 1)
        #expect(row?.connections == full.ports.first(where: { $0.key == PortKey.local(.tcp, port) })?.connections)
    }

    /// A server on a port inside the ephemeral range, its client on a port outside: the server
    /// side is kept because a listener holds its port (known before the dump), and after the
    /// listener closes because its side is remembered.
    @Test func serverSideOnAnEphemeralPortIsKept() throws {
        let listener = try LoopbackSocket.listener()
        let port = listener.port
        let client = try LoopbackSocket.tcp()
        try client.bind(try unusedPort())
        #expect(client.connect(port) == 0)
        let server = try listener.accept()
        defer { client.close(); server.close(); listener.close() }
        try #require(ephemeral.contains(port) && !ephemeral.contains(client.port))

        let sampler = try Sampler(options: SnapshotOptions(processes: .none, skipOutgoing: true),
                                  closedConnections: false)
        let first = try sampler.start()
        #expect(first.sockets.contains { $0.local.port == port && $0.peer.port == client.port })
        #expect(first.ports.first(where: { $0.key == PortKey.local(.tcp, port) })?.connections.established == 1)
        listener.close()
        let (next, _) = try sampler.sample()
        #expect(next.sockets.contains { $0.local.port == port && $0.peer.port == client.port })
        #expect(next.ports.first(where: { $0.key == PortKey.local(.tcp, port) })?.connections.established == 1)
    }

    /// The filter itself: the ranges outside the ephemeral one, the kept ports merged into
    /// ranges, peer port 0 and the ephemeral range; none when too many ranges are needed.
    @Test func filterRanges() {
        var memory = SideMemory()
        memory.sides = [1: PortKey.local(.tcp, 40001), 2: PortKey(role: .remote, proto: .tcp, port: 40500)]
        let filters = serverSideFilters(ephemeral: 32768...60999, listeners: [], memory: memory,
                                        protocols: [.tcp, .udp])
        #expect(filters?[.tcp] == PortFilter(local: [0...32767, 61000...65535, 40001...40001],
                                             peer: [0...0, 32768...60999]))
        #expect(filters?[.udp] == PortFilter(local: [0...32767, 61000...65535], peer: [0...0, 32768...60999]))
        memory.sides = Dictionary(uniqueKeysWithValues: (0..<100).map { (UInt64($0), PortKey.local(.tcp, UInt16(40000 + 2 * $0))) })
        #expect(serverSideFilters(ephemeral: 32768...60999, listeners: [], memory: memory, protocols: [.tcp]) == nil)
        memory.sides = Dictionary(uniqueKeysWithValues: (0..<100).map { (UInt64($0), PortKey.local(.tcp, UInt16(40000 + $0))) })
        #expect(serverSideFilters(ephemeral: 32768...60999, listeners: [], memory: memory, protocols: [.tcp])?[.tcp]?.local.last
                == 40000...40099)
    }
}

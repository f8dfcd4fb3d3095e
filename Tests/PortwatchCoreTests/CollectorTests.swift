import Foundation
import Glibc
import Testing
@testable import PortwatchCore

// Every collector reports what it could not see the same way: a note beside its value.

private func tempDir() throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("portwatch-collect-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

@Test func systemCountersNoteTheFilesTheyCouldNotRead() throws {
    let root = try tempDir()
    defer { try? FileManager.default.removeItem(at: root) }
    try "Tcp: RtoAlgorithm AttemptFails\nTcp: 1 7\n".write(to: root.appendingPathComponent("snmp"), atomically: true, encoding: .utf8)
    let partial = SystemCounterCollector(root: root.path).collect()
    #expect(partial.value["Tcp.AttemptFails"] == 7)
    #expect(partial.notes.count == 1)
    #expect(partial.notes.first?.contains("\(root.path)/netstat") == true)
    #expect(SystemCounterCollector().collect().notes.isEmpty)
}

@Test func socketCollectorCarriesTheFallbacksNote() throws {
    let root = try tempDir()
    defer { try? FileManager.default.removeItem(at: root) }
    try "  sl  local_address rem_address   st\n".write(to: root.appendingPathComponent("udp"), atomically: true, encoding: .utf8)
    let forced = defaultSocketSource(SocketSourceChoice(forceProcfs: true), procNet: root.path)
    let collected = try SocketCollector(source: forced, query: SocketQuery(protocols: [.udp], families: [.inet])).collect()
    #expect(collected.value.isEmpty)
    #expect(collected.notes.count == 1)
    // Asked for, not missing: the note does not claim sock_diag is unavailable.
    #expect(collected.notes.first?.contains("chosen") == true)
    #expect(collected.notes.first?.contains("unavailable") == false)
    #expect(try SocketCollector(source: SockDiagSource(), query: SocketQuery(protocols: [.udp])).collect().notes.isEmpty)
}

@Test func ownerCollectorNotesAMissingProcRoot() {
    let collected = OwnerCollector(inodes: [42], procRoot: "/nonexistent/proc").collect()
    #expect(collected.value.owners.isEmpty)
    #expect(collected.notes.contains { $0.contains("/nonexistent/proc") })
}

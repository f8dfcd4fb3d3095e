import Foundation
import Testing
@testable import PortwatchCore

/// A window whose system counters say `attempt_fails` = `fails`.
private func window(fails: Int64, seconds: Double = 1) -> WindowReport {
    WindowReport(seconds: seconds, ports: [:], system: [("attempt_fails", fails)], eventOverflows: 0,
                 closedConnectionsCounted: true, notes: [])
}

private func namespace(_ inode: UInt64, _ name: String?, own: Bool = false) -> NetworkNamespace {
    NetworkNamespace(inode: inode, name: name, path: "/run/netns/\(name ?? "x")", isOwn: own)
}

/// The `system_errors` members a writer produces for `windows`, parsed as a consumer would.
private func members(_ windows: NamespaceWindows) throws -> [String: Any] {
    var w = JSONWriter()
    w.beginObject()
    w.systemErrorMembers(windows)
    w.endObject()
    return try #require(try JSONSerialization.jsonObject(with: Data(w.bytes)) as? [String: Any])
}

/// Which window speaks for the system in a view over namespaces, and each namespace's own.
@Suite("namespace windows: each namespace's system counters")
struct NamespaceWindowsTests {
    @Test func ownNamespaceIsTheTopLevelWhereverItIsListed() throws {
        let web = namespace(10, "web"), host = namespace(1, nil, own: true)
        let windows = NamespaceWindows([(web, window(fails: 4)), (host, window(fails: 9))])
        #expect(windows.primary == 1)
        let doc = try members(windows)
        #expect((doc["system_errors"] as? [String: Any])?["attempt_fails"] as? Int == 9)
        let entries = try #require(doc["system_errors_by_namespace"] as? [[String: Any]])
        #expect(entries.compactMap { ($0["system_errors"] as? [String: Any])?["attempt_fails"] as? Int } == [4, 9])
        #expect(entries.compactMap { ($0["namespace"] as? [String: Any])?["name"] as? String } == ["web"])
    }

    @Test func severalOtherNamespacesHaveNoTopLevelCounters() throws {
        let windows = NamespaceWindows([(namespace(10, "web"), window(fails: 4)), (namespace(11, "db"), window(fails: 2))])
        #expect(windows.primary == nil)
        let doc = try members(windows)
        #expect((doc["system_errors"] as? [String: Any])?.isEmpty == true)
        #expect((doc["system_errors_by_namespace"] as? [Any])?.count == 2)
        #expect(windows.systemErrorLines.map(\.line) == ["attempt_fails 4", "attempt_fails 2"])
    }

    @Test func aNamespaceWithoutAWindowYetIsLeftOut() throws {
        // Joined at this sample: its first snapshot is its baseline, no counts to show.
        let windows = NamespaceWindows([(namespace(1, nil, own: true), window(fails: 0, seconds: 2)), (namespace(10, "new"), nil)])
        #expect(windows.seconds == 2)
        let doc = try members(windows)
        #expect((doc["system_errors_by_namespace"] as? [Any])?.count == 1)
        #expect(windows.systemErrorLines.isEmpty)
    }

    @Test func withoutNamespacesTheDocumentIsAsBefore() throws {
        let doc = try members(NamespaceWindows([(nil, window(fails: 3))]))
        #expect((doc["system_errors"] as? [String: Any])?["attempt_fails"] as? Int == 3)
        #expect(doc["system_errors_by_namespace"] == nil)
    }
}

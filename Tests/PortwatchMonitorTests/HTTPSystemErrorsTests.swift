// `system_errors_by_namespace` of `/api/v1/ports` (issue 9) over a real window of this host:
// its shape without `namespaces:` and with `?netns=`. That each namespace's entry carries that
// namespace's own kernel counters is shown end to end, with real namespaces, in
// PortwatchCLITests/DaemonNamespaceSystemErrorsTests.swift.

import Foundation
import Hummingbird
import HummingbirdTesting
import PortwatchCore
@testable import PortwatchMonitor
import Testing

private func get(_ path: String, from sample: LatestSample) async throws -> (status: HTTPResponse.Status, doc: [String: Any]) {
    let app = buildApplication(source: FakeMonitorSource(sample: sample),
                               options: HTTPOptions(listen: ListenAddress(host: "127.0.0.1", port: 0), token: nil),
                               metrics: PortMetrics())
    let (status, body) = try await app.test(.router) { client in
        try await client.execute(uri: path, method: .get) { response in (response.status, String(buffer: response.body)) }
    }
    return (status, try decodeJSONObject(body))
}

private func entries(_ doc: [String: Any]) -> [[String: Any]]? {
    doc["system_errors_by_namespace"] as? [[String: Any]]
}

/// The same JSON value (numbers compared as numbers).
private func same(_ a: Any?, _ b: Any?) -> Bool {
    guard let a = a as? NSObject, let b = b as? NSObject else { return false }
    return a.isEqual(b)
}

@Suite("HTTP API: system errors by namespace")
struct HTTPSystemErrorsTests {
    /// Without `namespaces:` the list holds the daemon's own namespace alone, `"netns": "host"`,
    /// with the very counters of the top-level `system_errors`; `?netns=host` answers the same.
    @Test func withoutNamespacesTheListIsTheDaemonsOwnEntry() async throws {
        let busy = try BusyListener()
        defer { busy.close() }
        var sample = busy.latest
        let own = try #require(NamespaceDirectory.own())
        sample.ownNamespace = own
        for path in ["/api/v1/ports", "/api/v1/ports?netns=host"] {
            let (status, doc) = try await get(path, from: sample)
            #expect(status == .ok)
            let list = try #require(entries(doc), "\(path): \(doc.keys.sorted())")
            #expect(list.count == 1, "\(path)")
            let entry = try #require(list.first)
            #expect(entry["netns"] as? String == "host")
            let namespace = try #require(entry["namespace"] as? [String: Any])
            #expect(namespace["own"] as? Bool == true)
            #expect((namespace["inode"] as? NSNumber)?.uint64Value == own.inode)
            #expect(same(entry["system_errors"], doc["system_errors"]), "\(path)")
            #expect(same(entry["window_seconds"], doc["window_seconds"]), "\(path)")
            #expect(same(entry["connect_failures_without_port"], doc["connect_failures_without_port"]), "\(path)")
        }
    }

    /// Before the first window there are no system errors to list: neither key is there.
    @Test func theBaselineSampleHasNoList() async throws {
        var sample = try LoopbackSampler.once()
        sample.ownNamespace = NamespaceDirectory.own()
        let (status, doc) = try await get("/api/v1/ports", from: sample)
        #expect(status == .ok)
        #expect(doc["system_errors"] == nil)
        #expect(doc["system_errors_by_namespace"] == nil)
    }

    /// With other namespaces: the daemon's own entry first, then each other one with a window
    /// under its label; `?netns=NAME` keeps that namespace's entry alone, and its counters are
    /// then the top-level ones; a namespace that just joined (no window yet) has no entry.
    @Test func otherNamespacesFollowAndNetnsNarrowsTheList() async throws {
        let busy = try BusyListener()
        defer { busy.close() }
        var sample = busy.latest
        let report = try #require(sample.report)
        sample.ownNamespace = NamespaceDirectory.own()
        // Counters made up for the other namespaces, so that each entry is told apart by them.
        var web = report
        web.system = [("attempt_fails", 7), ("out_rsts", 7)]
        let webNS = NetworkNamespace(inode: 4_000_000_001, name: "web", path: "/run/netns/web")
        let unnamed = NetworkNamespace(inode: 4_000_000_002, path: "/proc/1/ns/net", pid: 1)
        let fresh = NetworkNamespace(inode: 4_000_000_003, name: "fresh", path: "/run/netns/fresh")
        sample.namespaceParts = [
            NamespacePart(namespace: webNS, snapshot: sample.snapshot, report: web),
            NamespacePart(namespace: unnamed, snapshot: sample.snapshot, report: report),
            NamespacePart(namespace: fresh, snapshot: sample.snapshot, report: nil),
        ]

        let (_, all) = try await get("/api/v1/ports", from: sample)
        let list = try #require(entries(all))
        #expect(list.map { $0["netns"] as? String } == ["host", "web", "net:[4000000002]"])
        #expect(same(list.first?["system_errors"], all["system_errors"]))
        let webErrors = try #require(list[1]["system_errors"] as? [String: Any])
        #expect(webErrors.count == 2 && webErrors["attempt_fails"] as? Int == 7 && webErrors["out_rsts"] as? Int == 7)
        #expect((list[1]["namespace"] as? [String: Any])?["name"] as? String == "web")

        let (status, one) = try await get("/api/v1/ports?netns=web", from: sample)
        #expect(status == .ok)
        let narrowed = try #require(entries(one))
        #expect(narrowed.map { $0["netns"] as? String } == ["web"])
        #expect(same(narrowed.first?["system_errors"], one["system_errors"]))
        #expect(same(one["system_errors"], list[1]["system_errors"]))

        let (_, joining) = try await get("/api/v1/ports?netns=fresh", from: sample)
        #expect(joining["system_errors_by_namespace"] == nil)
    }
}

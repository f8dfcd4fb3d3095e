// `check --sample D` over several namespaces measures them in one window (issue 9): every
// namespace's baseline, one wait of D, every namespace's sample. Four named namespaces of our
// own (names carry our pid), listeners in two of them; everything is deleted by `defer`.

import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Four named namespaces with `lo` up: listeners on 8080 in the first and third, on 8081 in
/// the third only.
private final class CheckSampleLab: NamespaceLab, @unchecked Sendable {
    // @unchecked: no state of its own; the lab locks its state.
    init() throws {
        let k = NamespaceLab.nextSerial()
        try super.init(names: (1...4).map { "pwcs-\(getpid())-\(k)-ns\($0)" })
        _ = try startServer(["tcp-hold:127.0.0.1:8080"], in: names[0])
        _ = try startServer(["tcp-hold:127.0.0.1:8080", "tcp-hold:127.0.0.1:8081"], in: names[2])
    }

    /// The verdict each namespace's port must get: what a user sees without `--sample`.
    func expectedVerdict(_ name: String, port: Int) -> String {
        if name == names[0] { return port == 8080 ? "listening" : "free" }
        if name == names[2] { return "listening" }
        return "free"
    }
}

private extension Dictionary where Key == String, Value == Any {
    func double(_ key: String) -> Double? { (self[key] as? NSNumber)?.doubleValue }
}

@Suite("namespaces: check --sample samples every namespace in one window", .blocking,
       .enabled(if: TestEnv.canCreateNamespaces, "needs root with CAP_SYS_ADMIN, ip and python3 to build network namespaces"))
struct NamespaceCheckSampleTests {
    @Test func allNamespacesShareOneWindowAndKeepTheirVerdicts() throws {
        let lab = try CheckSampleLab()
        defer { lab.destroy() }
        let r = runPortwatch(["check", "8080,8081", "--sample", "1s", "--all-namespaces", "--expect", "listening", "--json"],
                             timeout: 120)
        // Our free namespaces do not meet `listening`: a definite no.
        #expect(r.status == 1, "\(r)")
        let doc = try #require(r.json(), "\(r)")
        #expect(doc.bool("matched") == false)
        #expect(doc.string("expected") == "listening")
        let ours = doc.objects("checks").filter { lab.names.contains($0.object("namespace")?.string("name") ?? "") }
        // Every namespace of ours, every port: one check each.
        #expect(ours.count == 8, "\(r)")
        for name in lab.names {
            for port in [8080, 8081] {
                let mine = ours.filter { $0.object("namespace")?.string("name") == name && $0.int("port") == port }
                try #require(mine.count == 1, "\(name) \(port): \(r)")
                let verdict = try #require(mine[0].string("verdict"))
                #expect(verdict == lab.expectedVerdict(name, port: port), "\(name) \(port): \(r)")
                #expect(mine[0].bool("matched") == (verdict == "listening"))
                // The same verdict as a check of that namespace alone, without a window.
                let alone = runPortwatch(["check", "\(port)", "--netns", name, "--json"])
                #expect(alone.json()?.string("verdict") == verdict, "\(name) \(port): \(alone)")
            }
        }
        // One window for all: every namespace's baseline was taken before any namespace's
        // sample, so the windows overlap. One window per namespace in turn (1 s each) would not.
        let windows = try ours.map { try #require($0.object("window"), "\(r)") }
        let starts = windows.compactMap { $0.double("started_at") }
        let ends = windows.compactMap { $0.double("ended_at") }
        try #require(starts.count == ours.count && ends.count == ours.count, "\(r)")
        #expect(starts.max()! < ends.min()!, "windows \(zip(starts, ends).map { "\($0)-\($1)" }): \(r)")
        for w in windows { #expect((w.double("seconds") ?? 0) > 0, "\(w)") }
        // Each namespace's own system counters are listed once, with its window.
        let byNamespace = doc.objects("system_errors_by_namespace")
            .filter { lab.names.contains($0.object("namespace")?.string("name") ?? "") }
        #expect(byNamespace.count == 4, "\(r)")
    }

    @Test func oneNamespaceKeepsItsSingleCheckDocument() throws {
        let lab = try CheckSampleLab()
        defer { lab.destroy() }
        let r = runPortwatch(["check", "8080", "--sample", "200ms", "--netns", lab.names[0], "--expect", "listening", "--json"])
        #expect(r.status == 0, "\(r)")
        let doc = try #require(r.json(), "\(r)")
        #expect(doc.string("verdict") == "listening")
        #expect(doc.object("namespace")?.string("name") == lab.names[0])
        #expect(doc["system_errors"] is [String: Any])
        let window = try #require(doc.object("window"), "\(r)")
        #expect((window.double("seconds") ?? 0) > 0)
        #expect((window.double("started_at") ?? 0) < (window.double("ended_at") ?? 0))
        // The text view names the namespace and exits as before.
        let text = runPortwatch(["check", "8080", "--sample", "200ms", "--netns", lab.names[1]])
        #expect(text.status == 0, "\(text)")
        #expect(text.stdout.contains("\(lab.names[1]) tcp/8080: free"), "\(text)")
    }

    @Test func captureWithoutNetRawIsStillExitTwo() throws {
        guard let setpriv = TestEnv.which("setpriv") else { return }
        let lab = try CheckSampleLab()
        defer { lab.destroy() }
        // Root, minus CAP_NET_RAW: every namespace is entered, none can capture.
        let r = runTool(setpriv, ["--inh-caps=-net_raw", "--bounding-set=-net_raw", TestEnv.portwatchPath,
                                  "check", "8080", "--sample", "200ms", "--capture", "--all-namespaces", "--json"], timeout: 60)
        #expect(r.status == 2, "\(r)")
        #expect(r.stderr.hasPrefix("portwatch: ") && r.stderr.split(separator: "\n").count == 1, "\(r)")
        #expect(r.stderr.contains("CAP_NET_RAW"), "\(r)")
        #expect(r.stdout.isEmpty, "\(r)")
    }
}

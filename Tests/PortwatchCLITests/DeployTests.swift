import Foundation
import Testing
import PortwatchTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// The repository root (this file is Tests/PortwatchCLITests/DeployTests.swift).
private let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().path

/// The metric names of PRODUCT.md's contract, plus the three the monitor issue adds and the
/// certificate expiry of issue 8's daemon probes.
private let contractMetrics: Set<String> = [
    "portwatch_port_listening", "portwatch_port_connections", "portwatch_port_received_bytes_total",
    "portwatch_port_sent_bytes_total", "portwatch_port_received_packets_total", "portwatch_port_sent_packets_total",
    "portwatch_port_retransmits_total", "portwatch_port_drops_total", "portwatch_port_accept_queue",
    "portwatch_port_accept_queue_max", "portwatch_probe_success", "portwatch_probe_duration_seconds",
    "portwatch_scan_detected_total", "portwatch_alerts_firing", "portwatch_sample_duration_seconds",
    "portwatch_history_write_errors_total", "portwatch_alert_queue_dropped_total",
    "portwatch_probe_tls_expiry_seconds",
]

/// The `portwatch_*` metric names an expression uses (a histogram's series named as the histogram).
private func metricNames(in text: String) -> Set<String> {
    let regex = try! NSRegularExpression(pattern: "portwatch_[a-z0-9_]+")
    var names = Set<String>()
    for m in regex.matches(in: text, range: NSRange(text.startIndex..., in: text)) {
        var name = String(text[Range(m.range, in: text)!])
        for suffix in ["_bucket", "_count", "_sum"] where name.hasSuffix(suffix) && contractMetrics.contains(String(name.dropLast(suffix.count))) {
            name = String(name.dropLast(suffix.count))
        }
        names.insert(name)
    }
    return names
}

private let promtool = TestEnv.which("promtool")

@Suite(.blocking) struct DeployTests {
    @Test(.enabled(if: promtool != nil, "promtool not installed (Debian package prometheus)"))
    func prometheusRulesPassPromtool() {
        let r = runTool(promtool!, ["check", "rules", repositoryRoot + "/deploy/prometheus/portwatch.rules.yml"])
        #expect(r.status == 0, "\(r)")
        #expect(r.stdout.contains("SUCCESS"), "\(r)")
    }

    @Test(.enabled(if: promtool != nil, "promtool not installed (Debian package prometheus)"))
    func theScrapeExamplePassesPromtool() {
        let r = runTool(promtool!, ["check", "config", repositoryRoot + "/deploy/prometheus/scrape.yml"])
        #expect(r.status == 0, "\(r)")
    }

    @Test(.enabled(if: promtool != nil, "promtool not installed (Debian package prometheus)"))
    func theAlertingRulesFireOnSyntheticSeries() {
        let r = runTool(promtool!, ["test", "rules", repositoryRoot + "/deploy/prometheus/portwatch.rules.test.yml"])
        #expect(r.status == 0, "\(r)")
    }

    @Test func alertingRulesUseOnlyContractMetrics() throws {
        let text = try String(contentsOfFile: repositoryRoot + "/deploy/prometheus/portwatch.rules.yml", encoding: .utf8)
        let names = metricNames(in: text)
        #expect(!names.isEmpty)
        #expect(names.subtracting(contractMetrics).isEmpty, "not in the contract: \(names.subtracting(contractMetrics))")
    }

    @Test func theGrafanaDashboardQueriesOnlyContractMetrics() throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: repositoryRoot + "/deploy/grafana/portwatch.json"))
        let dashboard = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        #expect(dashboard["title"] as? String == "portwatch")
        let panels = try #require(dashboard["panels"] as? [[String: Any]])
        var expressions: [String] = []
        for panel in panels {
            let targets = panel["targets"] as? [[String: Any]] ?? []
            #expect(!targets.isEmpty, "panel \(panel["title"] ?? "?") has no query")
            expressions += targets.compactMap { $0["expr"] as? String }
        }
        let variables = (dashboard["templating"] as? [String: Any])?["list"] as? [[String: Any]] ?? []
        for v in variables {
            if let q = v["query"] as? [String: Any], let text = q["query"] as? String { expressions.append(text) }
            if let text = v["definition"] as? String { expressions.append(text) }
        }
        #expect(expressions.count >= panels.count)
        var used = Set<String>()
        for e in expressions {
            let names = metricNames(in: e)
            #expect(!names.isEmpty || e.hasPrefix("label_values"), "expression names no portwatch metric: \(e)")
            #expect(names.subtracting(contractMetrics).isEmpty, "\(e): not in the contract: \(names.subtracting(contractMetrics))")
            used.formUnion(names)
        }
        // Every per-port contract metric has a panel.
        for name in contractMetrics where name.hasPrefix("portwatch_port_") {
            #expect(used.contains(name), "no panel shows \(name)")
        }
    }

    @Test(.timeLimit(.minutes(10)))
    func installPutsEveryFileInPlace() throws {
        let prefix = try makeTemporaryDirectory("install")
        defer { removeTree(prefix) }
        let r = runTool("/bin/bash", [repositoryRoot + "/deploy/install.sh", "--prefix", prefix, "--binary", TestEnv.portwatchPath],
                        timeout: 540)
        try #require(r.status == 0, "\(r)")
        let files = [
            "bin/portwatch", "lib/systemd/system/portwatch.service", "share/man/man1/portwatch.1",
            "share/man/man1/portwatch.daemon.1", "share/bash-completion/completions/portwatch",
            "share/zsh/site-functions/_portwatch", "share/fish/vendor_completions.d/portwatch.fish",
        ]
        for f in files {
            var st = stat()
            #expect(stat(prefix + "/" + f, &st) == 0 && st.st_size > 0, "missing or empty: \(f)")
        }
        #expect(access(prefix + "/bin/portwatch", X_OK) == 0)
        let version = runTool(prefix + "/bin/portwatch", ["--version"])
        #expect(version.status == 0 && version.stdout.trimmingCharacters(in: .whitespacesAndNewlines).first?.isNumber == true, "\(version)")

        let unit = try String(contentsOfFile: prefix + "/lib/systemd/system/portwatch.service", encoding: .utf8)
        #expect(unit.contains("ExecStart=\(prefix)/bin/portwatch daemon"))
        let bash = try String(contentsOfFile: prefix + "/share/bash-completion/completions/portwatch", encoding: .utf8)
        #expect(bash.contains("daemon") && bash.contains("--token-file"))
        // Each completion script parses in its shell (where the shell is installed).
        for (shell, file) in [("bash", "share/bash-completion/completions/portwatch"), ("zsh", "share/zsh/site-functions/_portwatch"),
                              ("fish", "share/fish/vendor_completions.d/portwatch.fish")] {
            guard let path = TestEnv.which(shell) else { continue }
            let check = runTool(path, ["-n", prefix + "/" + file])
            #expect(check.status == 0, "\(shell) -n \(file): \(check)")
        }
        let man = try String(contentsOfFile: prefix + "/share/man/man1/portwatch.daemon.1", encoding: .utf8)
        #expect(man.contains("token-file"))

        if let analyze = TestEnv.which("systemd-analyze") {
            let v = runTool(analyze, ["verify", "--man=no", prefix + "/lib/systemd/system/portwatch.service"], timeout: 60)
            #expect(v.status == 0 && v.stderr.isEmpty, "\(v)")
        }
    }

    @Test func theUnitGrantsExactlyTheDocumentedCapabilities() throws {
        let unit = try String(contentsOfFile: repositoryRoot + "/deploy/portwatch.service", encoding: .utf8)
        // CAP_NET_ADMIN (destroy events) is explained but not granted: unprivileged users may join
        // the sock_diag destroy groups.
        let caps = ["CAP_SYS_PTRACE", "CAP_DAC_READ_SEARCH", "CAP_NET_RAW"]
        for key in ["AmbientCapabilities=", "CapabilityBoundingSet="] {
            let line = try #require(unit.split(separator: "\n").first { $0.hasPrefix(key) })
            #expect(Set(line.dropFirst(key.count).split(separator: " ").map(String.init)) == Set(caps))
        }
        for cap in caps + ["CAP_NET_ADMIN"] {
            // Each capability is explained in a comment.
            #expect(unit.split(separator: "\n").contains { $0.hasPrefix("#") && $0.contains(cap) }, "\(cap) has no comment")
        }
        for setting in ["ProtectSystem=strict", "StateDirectory=portwatch", "NoNewPrivileges=yes", "DynamicUser=yes"] {
            #expect(unit.contains(setting))
        }
    }
}

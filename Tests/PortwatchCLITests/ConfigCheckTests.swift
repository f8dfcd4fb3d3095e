import Foundation
import Testing
import PortwatchTestSupport

// `portwatch config check FILE` run as the real binary on files the tests write: the compiler-style
// problem lines are the contract editors and CI scripts rely on.

/// A directory under /tmp holding one test's config files, removed afterwards.
private final class ConfigDir {
    let path: String

    init() throws {
        var template = Array("/tmp/pw-config-cli-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw SupportError.errno("mkdtemp") }
        path = String(cString: made)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    func write(_ name: String, _ text: String) -> String {
        let file = path + "/" + name
        #expect(FileManager.default.createFile(atPath: file, contents: Data(text.utf8)), "cannot write \(file)")
        return file
    }
}

private let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .deletingLastPathComponent().deletingLastPathComponent().path

@Test(.blocking) func configCheckListsEveryProblemCompilerStyle() throws {
    let dir = try ConfigDir()
    let file = dir.write("bad.yml", """
        interval: 5s
        intervall: 10s
        listen: 0.0.0.0:9910
        rules:
          - {name: a, metric: conections, above: 1}
        """)
    let r = runPortwatch(["config", "check", file])
    #expect(r.status == 2, "\(r)")
    #expect(r.stdout.isEmpty, "\(r)")
    let metrics = "connections, connections.established, connections.syn_recv, connections.syn_sent, "
        + "connections.time_wait, connections.close_wait, connections.fin_wait, connections.other, connections.total, "
        + "accept_queue, accept_queue_ratio, received_bps, sent_bps, received_pps, sent_pps, "
        + "connections_opened_per_second, listen_drops_per_second, drops_per_second, retransmits_per_second, "
        + "connect_timeouts_per_second, connect_refused_per_second, probe_success, probe_latency_ms, tls_days_left"
    let expected: [String] = [
        "\(file):2:1: unknown key 'intervall' (did you mean 'interval'?)",
        "\(file):3:9: listen: 0.0.0.0:9910 is not a loopback address, so token_file is required "
            + "(clients then send Authorization: Bearer TOKEN)",
        "\(file):5:23: rules[0].metric: unknown metric 'conections' (did you mean 'connections'?); valid metrics: "
            + metrics,
    ]
    #expect(r.stderrLines.map(String.init) == expected, "\(r)")
}

@Test(.blocking) func configCheckSummarizesAValidFile() throws {
    let dir = try ConfigDir()
    let file = dir.write("good.yml", """
        interval: 10s
        listen: 127.0.0.1:9911
        ports:
          - {port: 443, expect: listening}
        rules:
          - {name: crowded, metric: connections, above: 100}
        """)
    let r = runPortwatch(["config", "check", file])
    #expect(r.status == 0, "\(r)")
    #expect(r.stderr.isEmpty, "\(r)")
    #expect(r.stdout == "\(file): ok — interval 10s, listen 127.0.0.1:9911, 1 rule, 1 channel, 1 port\n", "\(r)")
}

@Test(.blocking) func configCheckAcceptsTheShippedExample() {
    let example = repositoryRoot + "/deploy/portwatch.example.yml"
    let r = runPortwatch(["config", "check", example])
    #expect(r.status == 0, "\(r)")
    #expect(r.stdout == "\(example): ok — interval 5s, listen 127.0.0.1:9910, 5 rules, 4 channels, 4 ports, 2 probes\n", "\(r)")
}

@Test(.blocking) func configCheckAcceptsAnEmptyFile() throws {
    let dir = try ConfigDir()
    let file = dir.write("empty.yml", "# nothing configured: the defaults\n")
    let r = runPortwatch(["config", "check", file])
    #expect(r.status == 0, "\(r)")
    #expect(r.stdout == "\(file): ok — interval 5s, listen 127.0.0.1:9910, 0 rules, 1 channel, 0 ports\n", "\(r)")
}

@Test(.blocking) func configCheckJSON() throws {
    let dir = try ConfigDir()
    let bad = dir.write("bad.yml", "interval: 5x\ncapture: maybe\n")
    let r = runPortwatch(["config", "check", bad, "--json"])
    #expect(r.status == 2, "\(r)")
    let doc = r.json()
    #expect(doc?.string("file") == bad)
    #expect(doc?.bool("valid") == false)
    let problems = doc?.objects("problems") ?? []
    #expect(problems.map { "\($0.int("line") ?? 0):\($0.int("column") ?? 0)" } == ["1:11", "2:10"], "\(r)")
    #expect(problems.first?.string("message")?.contains("unknown unit 'x'") == true, "\(r)")
    #expect(doc?["summary"] is NSNull)

    let good = dir.write("good.yml", "interval: 2s\nchannels: [log, {type: webhook, url: \"http://127.0.0.1:1/\"}]\n")
    let ok = runPortwatch(["config", "check", good, "--json"])
    #expect(ok.status == 0, "\(ok)")
    let summary = ok.json()?.object("summary")
    #expect(ok.json()?.bool("valid") == true)
    #expect(ok.json()?.objects("problems").isEmpty == true)
    #expect(summary?.string("interval") == "2s")
    #expect(summary?.int("interval_seconds") == 2)
    #expect(summary?.string("listen") == "127.0.0.1:9910")
    #expect(summary?.int("channels") == 2)
    #expect(summary?.int("rules") == 0)
}

@Test(.blocking) func configCheckOnAMissingFileIsOneLine() throws {
    let dir = try ConfigDir()
    let missing = dir.path + "/nope.yml"
    let r = runPortwatch(["config", "check", missing])
    #expect(r.status == 2, "\(r)")
    #expect(r.stdout.isEmpty)
    #expect(r.stderrLines == ["portwatch: \(missing): cannot read: No such file or directory"], "\(r)")

    let directory = runPortwatch(["config", "check", dir.path])
    #expect(directory.status == 2, "\(directory)")
    #expect(directory.stderrLines == ["portwatch: \(dir.path): is a directory, not a file"], "\(directory)")

    let noArgument = runPortwatch(["config", "check"])
    #expect(noArgument.status == 2, "\(noArgument)")
    #expect(noArgument.stderrLines.count == 1 && noArgument.stderr.hasPrefix("portwatch: "), "\(noArgument)")
}

@Test(.blocking) func configCheckReportsYAMLSyntaxErrorsWithTheirPlace() throws {
    let dir = try ConfigDir()
    let file = dir.write("syntax.yml", "interval: 5s\nrules:\n  - {name: a, metric: connections\n")
    let r = runPortwatch(["config", "check", file])
    #expect(r.status == 2, "\(r)")
    #expect(r.stderrLines.count == 1, "\(r)")
    #expect(r.stderr.hasPrefix("\(file):4:1: YAML syntax error: "), "\(r)")
}

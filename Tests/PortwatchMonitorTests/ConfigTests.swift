import Foundation
import Testing
@testable import PortwatchMonitor
import PortwatchCore

// The config loader: every bad config names the exact line and column of what is wrong, good
// configs become the values the daemon runs with, and an empty file is the defaults.

/// A bad config and the one problem it must produce.
struct BadConfigCase: CustomStringConvertible, Sendable {
    var name: String
    var yaml: String
    var line: Int
    var column: Int
    /// A phrase the message must contain.
    var phrase: String
    var description: String { name }
}

/// Parses `yaml` as `file` and expects it refused with exactly one problem, at `line`:`column`,
/// whose message contains `phrase` and which prints as `FILE:LINE:COLUMN: message`.
func expectOneConfigProblem(_ yaml: String, file: String = "bad.yml", line: Int, column: Int, phrase: String,
                            sourceLocation: SourceLocation = #_sourceLocation) {
    do throws(ConfigError) {
        let config = try ConfigLoader.parse(yaml, file: file)
        Issue.record("accepted: \(config)", sourceLocation: sourceLocation)
    } catch {
        #expect(error.problems.count == 1, "\(error.problems)", sourceLocation: sourceLocation)
        guard let problem = error.problems.first else { return }
        #expect(problem.file == file, sourceLocation: sourceLocation)
        #expect(problem.line == line && problem.column == column,
                "at \(problem.line):\(problem.column), expected \(line):\(column): \(problem.message)",
                sourceLocation: sourceLocation)
        #expect(problem.message.contains(phrase), "\(problem.message)", sourceLocation: sourceLocation)
        #expect(problem.description == "\(file):\(problem.line):\(problem.column): \(problem.message)",
                sourceLocation: sourceLocation)
    }
}

private let badConfigs: [BadConfigCase] = [
    BadConfigCase(name: "misspelt top-level key", yaml: "interval: 5s\nintervall: 10s\n",
              line: 2, column: 1, phrase: "unknown key 'intervall' (did you mean 'interval'?)"),
    BadConfigCase(name: "unknown key far from any", yaml: "frobnicate: 1\n",
              line: 1, column: 1, phrase: "unknown key 'frobnicate' (known keys: interval, listen"),
    BadConfigCase(name: "nested key at the top level", yaml: "interval: 5s\nmax_size: 1GB\n",
              line: 2, column: 1, phrase: "unknown key 'max_size' at the top level (it belongs under 'database')"),
    BadConfigCase(name: "dash instead of underscore", yaml: "token-file: /etc/portwatch/token\n",
              line: 1, column: 1, phrase: "did you mean 'token_file'?"),
    BadConfigCase(name: "unknown key in a nested mapping", yaml: "database:\n  retension: {raw: 6h}\n",
              line: 2, column: 3, phrase: "database: unknown key 'retension' (did you mean 'retention'?)"),
    BadConfigCase(name: "interval of the wrong type", yaml: "interval: [5s]\n",
              line: 1, column: 11, phrase: "interval: expected a duration"),
    BadConfigCase(name: "duration with an unknown unit", yaml: "interval: 5x\n",
              line: 1, column: 11, phrase: "unknown unit 'x'"),
    BadConfigCase(name: "interval too short", yaml: "interval: 10ms\n",
              line: 1, column: 11, phrase: "interval: must be at least 100ms"),
    BadConfigCase(name: "bad size", yaml: "database:\n  max_size: 5XB\n",
              line: 2, column: 13, phrase: "database.max_size: invalid size '5XB'"),
    BadConfigCase(name: "retention minute shorter than raw", yaml: "database:\n  retention: {raw: 2d, minute: 1d}\n",
              line: 2, column: 32, phrase: "is shorter than raw retention"),
    BadConfigCase(name: "misspelt metric", yaml: "rules:\n  - {name: a, metric: conections, above: 1}\n",
              line: 2, column: 23, phrase: "unknown metric 'conections' (did you mean 'connections'?); valid metrics: connections,"),
    BadConfigCase(name: "unknown connection state", yaml: "rules:\n  - name: a\n    metric: connections.bogus\n    above: 1\n",
              line: 3, column: 13, phrase: "rules[0].metric: unknown metric 'connections.bogus'"),
    BadConfigCase(name: "rule port out of range", yaml: "rules:\n  - {name: a, ports: \"70000\", metric: connections, above: 1}\n",
              line: 2, column: 22, phrase: "must be 1-65535"),
    BadConfigCase(name: "rule without a condition", yaml: "rules:\n  - name: a\n    metric: connections\n",
              line: 2, column: 5, phrase: "rules[0]: needs one of above, below or anomaly"),
    BadConfigCase(name: "rule with above and below", yaml: "rules:\n  - name: a\n    metric: connections\n    above: 5\n    below: 1\n",
              line: 5, column: 5, phrase: "'below' cannot be combined with 'above'"),
    BadConfigCase(name: "rule without a metric", yaml: "rules:\n  - {name: a, above: 1}\n",
              line: 2, column: 5, phrase: "rules[0]: missing key 'metric'"),
    BadConfigCase(name: "threshold that is not a number", yaml: "rules:\n  - {name: a, metric: connections, above: lots}\n",
              line: 2, column: 43, phrase: "rules[0].above: expected a number, found 'lots'"),
    BadConfigCase(name: "anomaly sigma of zero", yaml: "rules:\n  - name: a\n    metric: received_bps\n    anomaly: {sigma: 0}\n",
              line: 4, column: 22, phrase: "rules[0].anomaly.sigma: must be above 0"),
    BadConfigCase(name: "duplicate rule names",
              yaml: "rules:\n  - {name: a, metric: connections, above: 1}\n  - {name: a, metric: accept_queue, above: 1}\n",
              line: 3, column: 12, phrase: "duplicate rule name 'a' (first at line 2)"),
    BadConfigCase(name: "unknown channel type", yaml: "channels:\n  - {type: webhok, url: \"http://127.0.0.1:9000/\"}\n",
              line: 2, column: 12, phrase: "unknown channel type 'webhok' (did you mean 'webhook'?)"),
    BadConfigCase(name: "webhook url that is not http", yaml: "channels:\n  - {type: webhook, url: \"ftp://example.com/x\"}\n",
              line: 2, column: 26, phrase: "is not an http:// or https:// URL"),
    BadConfigCase(name: "webhook without url", yaml: "channels:\n  - type: webhook\n",
              line: 2, column: 5, phrase: "channels[0]: missing key 'url'"),
    BadConfigCase(name: "empty exec command", yaml: "channels:\n  - {type: exec, command: []}\n",
              line: 2, column: 27, phrase: "channels[0].command: is empty"),
    BadConfigCase(name: "exec program that does not exist", yaml: "channels:\n  - {type: exec, command: [/nonexistent/notify]}\n",
              line: 2, column: 27, phrase: "'/nonexistent/notify' is not an executable file"),
    BadConfigCase(name: "zero channel timeout", yaml: "channels:\n  - {type: alertmanager, url: \"http://127.0.0.1:9093\", timeout: 0s}\n",
              line: 2, column: 65, phrase: "channels[0].timeout: must be at least 10ms"),
    BadConfigCase(name: "key that does not apply to the channel type", yaml: "channels:\n  - {type: log, url: \"http://127.0.0.1/\"}\n",
              line: 2, column: 17, phrase: "'url' does not apply to a log channel"),
    BadConfigCase(name: "listen port out of range", yaml: "listen: \"127.0.0.1:70000\"\n",
              line: 1, column: 9, phrase: "bad listen address: invalid port '70000'"),
    BadConfigCase(name: "listen without port", yaml: "listen: localhost\n",
              line: 1, column: 9, phrase: "bad listen address: missing port"),
    BadConfigCase(name: "public listen without a token file", yaml: "interval: 5s\nlisten: 0.0.0.0:9910\n",
              line: 2, column: 9, phrase: "0.0.0.0:9910 is not a loopback address, so token_file is required"),
    BadConfigCase(name: "token file that does not exist", yaml: "listen: \"[::]:9910\"\ntoken_file: /nonexistent/portwatch-token\n",
              line: 2, column: 13, phrase: "token_file: /nonexistent/portwatch-token cannot be read: No such file or directory"),
    BadConfigCase(name: "unknown expectation", yaml: "ports:\n  - {port: 443, expect: listen}\n",
              line: 2, column: 25, phrase: "unknown expectation 'listen' (did you mean 'listening'?)"),
    BadConfigCase(name: "port range where one port is expected", yaml: "ports:\n  - {port: 8000-8100, expect: listening}\n",
              line: 2, column: 12, phrase: "'8000-8100' is more than one port"),
    BadConfigCase(name: "protocol that contradicts the port", yaml: "ports:\n  - port: 53/udp\n    protocol: tcp\n",
              line: 3, column: 15, phrase: "tcp contradicts port '53/udp'"),
    BadConfigCase(name: "same port twice", yaml: "ports:\n  - {port: 53, protocol: udp}\n  - {port: \"53/udp\"}\n",
              line: 3, column: 12, phrase: "53/udp is already listed at line 2"),
    BadConfigCase(name: "bool that is not a bool", yaml: "capture: maybe\n",
              line: 1, column: 10, phrase: "capture: expected true or false, found 'maybe'"),
    BadConfigCase(name: "max_ports of zero", yaml: "metrics: {max_ports: 0}\n",
              line: 1, column: 22, phrase: "metrics.max_ports: must be between 1 and 100000, found 0"),
    BadConfigCase(name: "packet detector without capture", yaml: "detectors:\n  port_scan: true\n",
              line: 2, column: 14, phrase: "detectors.port_scan: needs capture: true"),
    BadConfigCase(name: "rules that are not a list", yaml: "rules: {name: a}\n",
              line: 1, column: 8, phrase: "rules: expected a list, found a mapping"),
    BadConfigCase(name: "a list at the top level", yaml: "- interval\n- 5s\n",
              line: 1, column: 1, phrase: "expected a mapping of settings (key: value) at the top level"),
    BadConfigCase(name: "duplicate key", yaml: "interval: 5s\nlisten: 127.0.0.1:9910\ninterval: 6s\n",
              line: 3, column: 1, phrase: "duplicate key 'interval' (first at line 1)"),
    BadConfigCase(name: "YAML syntax: unclosed flow mapping", yaml: "interval: 5s\nrules:\n  - {name: a, metric: connections\n",
              line: 4, column: 1, phrase: "YAML syntax error: did not find expected ',' or '}'"),
    BadConfigCase(name: "YAML syntax: tab indentation", yaml: "database:\n\tmax_size: 5MB\n",
              line: 2, column: 1, phrase: "YAML syntax error: found character that cannot start any token"),
    // libyaml stops at its nesting limit and marks the place it was parsing from, not the 1001st '['.
    BadConfigCase(name: "YAML nested beyond any config", yaml: "interval: 5s\nrules: " + String(repeating: "[", count: 2000) + "\n",
              line: 2, column: 9, phrase: "YAML syntax error: nested too deeply"),
    BadConfigCase(name: "rule name with a newline", yaml: "rules:\n  - {name: \"web\\nfront\", metric: connections, above: 1}\n",
              line: 2, column: 12, phrase: "rules[0].name: must not contain control characters"),
    BadConfigCase(name: "database path with a tilde", yaml: "database: {path: ~/history.sqlite}\n",
              line: 1, column: 18, phrase: "'~' is not expanded here"),
]

@Test(arguments: badConfigs)
func badConfigNamesLineColumnAndProblem(_ bad: BadConfigCase) {
    expectOneConfigProblem(bad.yaml, line: bad.line, column: bad.column, phrase: bad.phrase)
}

@Test func everyProblemIsReportedInFileOrder() {
    let yaml = """
        interval: 5x
        listen: 127.0.0.1:9910
        rules:
          - {name: a, metric: nope, above: 1}
          - {name: b, metric: connections}
        channels:
          - {type: pager}
        capture: sometimes
        """
    do throws(ConfigError) {
        _ = try ConfigLoader.parse(yaml, file: "many.yml")
        Issue.record("accepted a config with four problems")
    } catch {
        let places = error.problems.map { "\($0.line):\($0.column)" }
        #expect(places == ["1:11", "4:23", "5:5", "7:12", "8:10"], "\(error.problems)")
    }
}

@Test func emptyFilesGiveTheDefaults() throws {
    for text in ["", "\n\n", "# only a comment\n", "~\n", "---\n"] {
        let config = try ConfigLoader.parse(text, file: "empty.yml")
        #expect(config == MonitorConfig(), "for \(text.debugDescription)")
    }
    let defaults = MonitorConfig()
    #expect(defaults.interval == .seconds(5))
    #expect(defaults.listen.description == "127.0.0.1:9910")
    #expect(defaults.channels == [.log])
    #expect(defaults.database.retention.raw == .seconds(6 * 3600))
    #expect(defaults.database.maxSize == 500_000_000)
}

@Test func productExampleParsesToItsValues() throws {
    // The shape in PRODUCT.md (its token file and exec program replaced by ones that exist here).
    let dir = try ConfigTempDir()
    let token = dir.write("token", "s3cret-token\n")
    let yaml = """
        interval: 2s
        listen: 0.0.0.0:9911
        token_file: \(token)
        database: {path: /tmp/pw-history.sqlite, retention: {raw: 3h, minute: 2d, hour: 30d}, max_size: 64MiB}
        ports:
          - {port: 443, name: web, expect: listening}
          - {port: 23, expect: closed}
          - {port: "53/udp", name: dns, max_connections: 10}
        rules:
          - {name: web-crowded, ports: "443", metric: connections.established, above: 5000, for: 1m, severity: warning}
          - {name: listen-drops, metric: listen_drops_per_second, above: 0, for: 30s, keep_firing_for: 2m}
          - {name: rx-anomaly, ports: "443", metric: received_bps, anomaly: {sigma: 4.5, warmup: 1h}, for: 2m}
          - {name: idle, ports: [80, "8000-8100"], metric: connections, below: 1, severity: info}
        detectors: {new_listener: false, port_scan: true}
        capture: true
        metrics: {max_ports: 200}
        instance: web-01
        channels:
          - {type: log}
          - {type: webhook, url: "http://127.0.0.1:9000/hook", timeout: 1.5s}
          - {type: alertmanager, url: "https://am.example:9093"}
          - {type: exec, command: ["/bin/sh", "-c", "cat > /dev/null"], timeout: 10s}
        """
    let config = try ConfigLoader.parse(yaml, file: dir.path + "/portwatch.yml")
    #expect(config.interval == .seconds(2))
    #expect(config.listen == ListenAddress(host: "0.0.0.0", port: 9911))
    #expect(config.tokenFile == token)
    #expect(config.database.path == "/tmp/pw-history.sqlite")
    #expect(config.database.retention.raw == .seconds(3 * 3600))
    #expect(config.database.retention.minute == .seconds(2 * 86400))
    #expect(config.database.retention.hour == .seconds(30 * 86400))
    #expect(config.database.maxSize == 64 * 1024 * 1024)
    #expect(config.ports == [
        PortExpectation(proto: .tcp, port: 443, name: "web", expect: .listening),
        PortExpectation(proto: .tcp, port: 23, expect: .closed),
        PortExpectation(proto: .udp, port: 53, name: "dns", maxConnections: 10),
    ])
    #expect(config.rules == [
        RuleConfig(name: "web-crowded", ports: "443", metric: .connectionsInState("established"), above: 5000,
                   forDuration: .seconds(60), severity: "warning"),
        RuleConfig(name: "listen-drops", metric: .listenDropsPerSecond, above: 0, forDuration: .seconds(30),
                   keepFiringFor: .seconds(120)),
        RuleConfig(name: "rx-anomaly", ports: "443", metric: .receivedBps,
                   anomaly: AnomalyConfig(sigma: 4.5, warmup: .seconds(3600)), forDuration: .seconds(120)),
        RuleConfig(name: "idle", ports: "80,8000-8100", metric: .connections, below: 1, severity: "info"),
    ])
    #expect(config.detectors.newListener == false)
    #expect(config.detectors.ownerChanged == true)
    #expect(config.detectors.portScan == true)
    #expect(config.capture == true)
    #expect(config.metrics.maxPorts == 200)
    #expect(config.instance == "web-01")
    #expect(config.channels == [
        .log,
        .webhook(url: "http://127.0.0.1:9000/hook", timeout: .milliseconds(1500)),
        .alertmanager(url: "https://am.example:9093", timeout: .seconds(5)),
        .exec(command: ["/bin/sh", "-c", "cat > /dev/null"], timeout: .seconds(10)),
    ])
}

@Test func shorthandsAndYAMLFeaturesOperatorsUse() throws {
    let yaml = """
        interval: 30          # a bare number is seconds
        listen: "[::1]:9910"
        ports:
          - {port: 53, protocol: UDP}
          - port: 8080
        defaults: &crowded {metric: connections, above: 100, for: 1m}
        """
    // `defaults` is not a key: an anchor needs a home, and the rules below show merge keys work.
    do throws(ConfigError) {
        _ = try ConfigLoader.parse(yaml, file: "x.yml")
        Issue.record("accepted an unknown key")
    } catch {
        #expect(error.problems.map(\.line) == [6])
    }
    let merged = """
        interval: 30
        listen: "[::1]:9910"
        channels: [log]
        ports:
          - {port: 53, protocol: UDP}
          - port: 8080
        rules:
          - &crowded {name: web, ports: 443, metric: connections, above: 100, for: 1m}
          - {<<: *crowded, name: api, ports: 8443}
        """
    let config = try ConfigLoader.parse(merged, file: "x.yml")
    #expect(config.interval == .seconds(30))
    #expect(config.listen == ListenAddress(host: "::1", port: 9910))
    #expect(config.listen.isLoopback)
    #expect(config.channels == [.log])
    #expect(config.ports.map { "\($0.port)/\($0.proto.rawValue)" } == ["53/udp", "8080/tcp"])
    #expect(config.rules.map(\.name) == ["web", "api"])
    #expect(config.rules.map(\.ports) == ["443", "8443"])
    #expect(config.rules[1].above == 100 && config.rules[1].forDuration == .seconds(60))
}

@Test func relativePathsStartAtTheConfigFilesDirectory() throws {
    let dir = try ConfigTempDir()
    _ = dir.write("token", "  abc123 \n")
    let yaml = "listen: 0.0.0.0:9910\ntoken_file: token\ndatabase: {path: state/history.sqlite}\n"
    let config = try ConfigLoader.parse(yaml, file: dir.path + "/portwatch.yml")
    #expect(config.tokenFile == dir.path + "/token")
    #expect(config.database.path == dir.path + "/state/history.sqlite")
    #expect(try ConfigLoader.readToken(file: dir.path + "/token") == "abc123")
}

@Test func tokenFilesThatCannotServe() throws {
    let dir = try ConfigTempDir()
    let empty = dir.write("empty", " \n\n")
    let twoWords = dir.write("two", "abc def\n")
    for (path, phrase) in [(empty, "is empty"), (twoWords, "more than one word"), (dir.path, "is a directory"),
                           (dir.path + "/missing", "No such file or directory")] {
        do throws(ConfigError) {
            _ = try ConfigLoader.readToken(file: path)
            Issue.record("accepted token file \(path)")
        } catch {
            #expect(error.problems.count == 1)
            #expect(error.problems.first?.line == 0)
            #expect(error.problems.first?.message.contains(phrase) == true, "\(error)")
            #expect(error.description.hasPrefix(path + ": "))
        }
        do throws(ConfigError) {
            _ = try ConfigLoader.parse("listen: 10.1.2.3:9910\ntoken_file: \(path)\n", file: "c.yml")
            Issue.record("accepted token file \(path) in a config")
        } catch {
            #expect(error.problems.map { "\($0.line):\($0.column)" } == ["2:13"], "\(error)")
            #expect(error.problems.first?.message.contains(phrase) == true, "\(error)")
        }
    }
}

@Test func loadReportsFilesItCannotRead() throws {
    let dir = try ConfigTempDir()
    for (path, expected) in [(dir.path + "/none.yml", "cannot read: No such file or directory"),
                             (dir.path, "is a directory, not a file")] {
        do throws(ConfigError) {
            _ = try ConfigLoader.load(file: path)
            Issue.record("loaded \(path)")
        } catch {
            #expect(error.problems.count == 1)
            #expect(error.problems.first?.line == 0)
            #expect(error.description == "\(path): \(expected)")
        }
    }
    // Line 2 is `a: ` and then a byte that is not UTF-8.
    let binary = dir.path + "/binary.yml"
    #expect(FileManager.default.createFile(atPath: binary, contents: Data([0x69, 0x3a, 0x20, 0x31, 0x0a, 0x61, 0x3a, 0x20, 0xff, 0x0a])))
    do throws(ConfigError) {
        _ = try ConfigLoader.load(file: binary)
        Issue.record("loaded a file that is not UTF-8")
    } catch {
        #expect(error.problems.map { "\($0.line):\($0.column)" } == ["2:4"])
        #expect(error.problems.first?.message.contains("not UTF-8") == true)
    }
}

@Test func exampleConfigInDeployIsValid() throws {
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    let config = try ConfigLoader.load(file: root.appendingPathComponent("deploy/portwatch.example.yml").path)
    #expect(config.rules.count == 5)
    #expect(config.channels.count == 4)
    #expect(config.ports.count == 4)
    #expect(config.probes.map(\.target.text) == ["db.internal:5432", "127.0.0.1:25"])
    #expect(config.rules.last?.probe == "db.internal:5432")
    #expect(config.listen.isLoopback)
}

@Test func databasePathFollowsXDGAndRoot() {
    let database = DatabaseConfig()
    #expect(database.resolvedPath(environment: ["XDG_STATE_HOME": "/x/state", "HOME": "/home/u"], isRoot: false)
            == "/x/state/portwatch/history.sqlite")
    #expect(database.resolvedPath(environment: ["HOME": "/home/u/"], isRoot: false)
            == "/home/u/.local/state/portwatch/history.sqlite")
    // A relative XDG_STATE_HOME is invalid by the XDG spec and ignored.
    #expect(database.resolvedPath(environment: ["XDG_STATE_HOME": "state", "HOME": "/home/u"], isRoot: false)
            == "/home/u/.local/state/portwatch/history.sqlite")
    #expect(database.resolvedPath(environment: ["XDG_STATE_HOME": "/x/state", "HOME": "/root"], isRoot: true)
            == "/var/lib/portwatch/history.sqlite")
    #expect(database.resolvedPath(environment: ["STATE_DIRECTORY": "/var/lib/portwatch:/var/lib/other"], isRoot: false)
            == "/var/lib/portwatch/history.sqlite")
    var configured = DatabaseConfig()
    configured.path = "/srv/pw.sqlite"
    #expect(configured.resolvedPath(environment: ["HOME": "/home/u"], isRoot: true) == "/srv/pw.sqlite")
}

@Test func suggestionsAreOnlyForCloseNames() {
    #expect(closestMatch(to: "recieved_bps", among: RuleMetric.names) == "received_bps")
    #expect(closestMatch(to: "Listen", among: ConfigReader.topLevelKeys) == "listen")
    #expect(closestMatch(to: "ab", among: ConfigReader.topLevelKeys) == nil)
    #expect(closestMatch(to: "zzzzzzzz", among: ConfigReader.topLevelKeys) == nil)
}

/// A temporary directory removed when the test ends.
private final class ConfigTempDir {
    let path: String

    init() throws {
        var template = Array("/tmp/pw-config-test-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw CocoaError(.fileWriteUnknown) }
        path = String(cString: made)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    /// Writes a file in the directory and returns its path.
    @discardableResult
    func write(_ name: String, _ text: String) -> String {
        let file = path + "/" + name
        #expect(FileManager.default.createFile(atPath: file, contents: Data(text.utf8)), "cannot write \(file)")
        return file
    }
}

@Test func listenAddressesForTheDaemonFlag() throws {
    #expect(try ListenAddress(parsing: "127.0.0.1:9910") == ListenAddress(host: "127.0.0.1", port: 9910))
    #expect(try ListenAddress(parsing: "[::1]:9910").isLoopback)
    #expect(try ListenAddress(parsing: "localhost:9910").isLoopback)
    #expect(try !ListenAddress(parsing: "0.0.0.0:9910").isLoopback)
    #expect(try ListenAddress(parsing: "[::]:9910").description == "[::]:9910")
    for bad in ["127.0.0.1", "::1:9910", "127.0.0.1:0", "300.1.1.1:80", ":9910"] {
        #expect(throws: PortwatchError.self, "\(bad)") { try ListenAddress(parsing: bad) }
    }

    var config = MonitorConfig()
    #expect(config.missingTokenProblem == nil)
    config.listen = ListenAddress(host: "192.0.2.1", port: 9910)
    #expect(config.missingTokenProblem?.contains("token_file is required") == true)
    config.tokenFile = "/etc/portwatch/token"
    #expect(config.missingTokenProblem == nil)
}

@Test func channelShorthands() throws {
    let config = try ConfigLoader.parse("channels:\n  - log\n  - {type: exec, command: /bin/true}\n", file: "c.yml")
    #expect(config.channels == [.log, .exec(command: ["/bin/true"], timeout: .seconds(10))])
    #expect(try ConfigLoader.parse("channels: []\n", file: "c.yml").channels.isEmpty)
}

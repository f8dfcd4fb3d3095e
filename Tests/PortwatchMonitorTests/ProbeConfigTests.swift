import Foundation
import Testing
@testable import PortwatchMonitor
import PortwatchCore

// The `probes:` section and rules on probe metrics: every bad entry names its line and column,
// good entries become the targets and options the probe service runs with.

private let badProbeConfigs: [BadConfigCase] = [
    BadConfigCase(name: "probe without a target", yaml: "probes:\n  - {name: db}\n",
                  line: 2, column: 5, phrase: "probes[0]: missing key 'target'"),
    BadConfigCase(name: "misspelt probe key", yaml: "probes:\n  - {target: \"a:1\", intervall: 5s}\n",
                  line: 2, column: 21, phrase: "unknown key 'intervall' (did you mean 'interval'?)"),
    BadConfigCase(name: "target without a port", yaml: "probes:\n  - target: db.internal\n",
                  line: 2, column: 13, phrase: "probes[0].target: 'db.internal' has no port"),
    BadConfigCase(name: "target port out of range", yaml: "probes:\n  - target: \"db:70000\"\n",
                  line: 2, column: 13, phrase: "port 70000 is out of range"),
    BadConfigCase(name: "target with an unknown service", yaml: "probes:\n  - target: db:nosuchservice\n",
                  line: 2, column: 13, phrase: "'nosuchservice' is neither a port number nor a known tcp service name"),
    BadConfigCase(name: "IPv6 target without brackets", yaml: "probes:\n  - target: \"::1:80\"\n",
                  line: 2, column: 13, phrase: "write an IPv6 target as [ADDRESS]:PORT"),
    BadConfigCase(name: "probe interval too short", yaml: "probes:\n  - target: a:1\n    interval: 100ms\n",
                  line: 3, column: 15, phrase: "probes[0].interval: must be at least 1s"),
    BadConfigCase(name: "probe timeout longer than its interval",
                  yaml: "probes:\n  - target: a:1\n    interval: 2s\n    timeout: 5s\n",
                  line: 4, column: 14, phrase: "probes[0].timeout: 5s is longer than the interval (2s)"),
    BadConfigCase(name: "probe count of zero", yaml: "probes:\n  - target: a:1\n    count: 0\n",
                  line: 3, column: 12, phrase: "probes[0].count: must be between 1 and 100, found 0"),
    BadConfigCase(name: "sni without tls", yaml: "probes:\n  - target: a:1\n    sni: example.org\n",
                  line: 3, column: 5, phrase: "probes[0]: 'sni' needs tls: true"),
    BadConfigCase(name: "expect that is not a regular expression",
                  yaml: "probes:\n  - target: a:1\n    expect: \"(unclosed\"\n",
                  line: 3, column: 13, phrase: "probes[0].expect: not a valid regular expression"),
    BadConfigCase(name: "tls on a udp probe", yaml: "probes:\n  - {target: a:53, udp: true, tls: true}\n",
                  line: 2, column: 31, phrase: "'tls' does not apply to a udp probe"),
    BadConfigCase(name: "same target twice", yaml: "probes:\n  - target: a:1\n  - target: a:1\n",
                  line: 3, column: 13, phrase: "a:1 is already probed at line 2"),
    BadConfigCase(name: "unknown escape in send", yaml: "probes:\n  - {target: a:1, send: 'x\\q'}\n",
                  line: 2, column: 25, phrase: "unknown escape '\\q'"),
    BadConfigCase(name: "warn_days below zero", yaml: "probes:\n  - {target: a:443, tls: true, warn_days: -1}\n",
                  line: 2, column: 43, phrase: "probes[0].warn_days: must be between 0 and 3650"),
    BadConfigCase(name: "probe rule with ports",
                  yaml: "probes:\n  - target: a:1\nrules:\n  - {name: r, ports: \"80\", metric: probe_success, below: 1}\n",
                  line: 4, column: 15, phrase: "'ports' does not apply to probe_success (a probe metric)"),
    BadConfigCase(name: "rule naming a probe that is not configured",
                  yaml: "probes:\n  - {target: a:1, name: db}\nrules:\n  - {name: r, probe: dc, metric: probe_success, below: 1}\n",
                  line: 4, column: 22, phrase: "rules[0].probe: 'dc' is not a configured probe (did you mean 'db'?)"),
    BadConfigCase(name: "probe with a port metric",
                  yaml: "probes:\n  - target: a:1\nrules:\n  - {name: r, probe: a:1, metric: connections, above: 1}\n",
                  line: 4, column: 15, phrase: "'probe' needs a probe metric (probe_success, probe_latency_ms, tls_days_left)"),
    BadConfigCase(name: "probe metric without probes", yaml: "rules:\n  - {name: r, metric: probe_latency_ms, above: 5}\n",
                  line: 2, column: 23, phrase: "rules[0].metric: probe_latency_ms needs probes: configured"),
    BadConfigCase(name: "probe key misspelt at the top level", yaml: "probe:\n  - target: a:1\n",
                  line: 1, column: 1, phrase: "unknown key 'probe' (did you mean 'probes'?)"),
]

@Test(arguments: badProbeConfigs)
func badProbeConfigNamesLineColumnAndProblem(_ bad: BadConfigCase) {
    expectOneConfigProblem(bad.yaml, file: "probes.yml", line: bad.line, column: bad.column, phrase: bad.phrase)
}

@Test func probeEntriesBecomeTargetsAndOptions() throws {
    let yaml = """
        probes:
          - {target: "db.internal:5432", name: db, interval: 10s, timeout: 2s, count: 3}
          - target: "[::1]:443"
            tls: true
            sni: www.example.org
            insecure: true
            warn_days: 30
          - {target: "localhost:ssh", send: 'PING\\r\\n', expect: "^\\\\+PONG"}
          - {target: "10.0.0.53:53", udp: true, interval: 2s}
        rules:
          - {name: db-down, probe: db, metric: probe_success, below: 1}
          - {name: slow, metric: probe_latency_ms, above: 250, for: 1m}
        """
    let config = try ConfigLoader.parse(yaml, file: "good.yml")
    #expect(config.probes.count == 4)
    let db = config.probes[0]
    #expect(db.target == ProbeTarget(text: "db.internal:5432", host: "db.internal", port: 5432, proto: .tcp))
    #expect(db.name == "db" && db.interval == .seconds(10))
    #expect(db.options.timeout == 2 && db.options.count == 3 && !db.options.tls)
    let web = config.probes[1]
    #expect(web.target.host == "::1" && web.target.port == 443)
    #expect(web.interval == ProbeConfig.defaultInterval && web.options.timeout == 5)
    #expect(web.options.tls && web.options.sni == "www.example.org" && web.options.insecure && web.options.warnDays == 30)
    let ssh = config.probes[2]
    #expect(ssh.target.port == 22, "service names resolve through /etc/services")
    #expect(ssh.options.send == Array("PING\r\n".utf8), "\\r\\n escapes are decoded in single-quoted text")
    #expect(ssh.options.expect == "^\\+PONG")
    let dns = config.probes[3]
    #expect(dns.target.proto == .udp)
    #expect(dns.options.timeout == 2, "the timeout defaults to the interval when that is shorter than 5s")
    #expect(config.rules[0].probe == "db.internal:5432", "a probe's name stands for its target")
    #expect(config.rules[0].metric == .probeSuccess)
    #expect(config.rules[1].probe == nil && config.rules[1].metric == .probeLatencyMs)
}

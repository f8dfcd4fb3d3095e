// The probe decisions the CLI and the daemon share: --send escapes, the received line shown,
// what makes a target unhealthy, and the nagios status.

import Foundation
import Testing
@testable import PortwatchCore

@Suite("probe decisions: escapes, health, plugin status")
struct ProbeDecisionTests {
    @Test func sendEscapesDecode() throws {
        #expect(try decodeSendText(#"GET / HTTP/1.0\r\n\r\n"#) == Array("GET / HTTP/1.0\r\n\r\n".utf8))
        #expect(try decodeSendText(#"a\tb\\c\x41\0"#) == [0x61, 0x09, 0x62, 0x5C, 0x63, 0x41, 0x00])
        for bad in [#"oops\"#, #"\q"#, #"\x4"#, #"\xZZ"#] {
            #expect(throws: PortwatchError.self) { try decodeSendText(bad) }
        }
    }

    @Test func firstLineIsEscapedAndCut() {
        #expect(firstLine(of: Array("SSH-2.0-OpenSSH\r\nmore".utf8)) == "SSH-2.0-OpenSSH")
        #expect(firstLine(of: [0x41, 0x09, 0x01, 0x42]) == "A\\t\\x01B")
        #expect(firstLine(of: Array(repeating: 0x61, count: 300), limit: 10) == String(repeating: "a", count: 10) + "…")
    }

    private func tls(days: Int, verified: Bool) -> TLSReport {
        TLSReport(version: "TLSv1.3", cipher: "", alpn: nil, subject: "CN=x", issuer: "CN=x", sans: ["x"],
                  notAfter: Date(timeIntervalSinceNow: Double(days) * 86_400 + 3600), daysLeft: days,
                  verified: verified, verifyError: verified ? nil : "self-signed certificate", handshakeMs: 1)
    }

    private func result(_ state: RemoteState, tls: TLSReport? = nil, expect: ExpectReport? = nil,
                        options: ProbeOptions) -> ProbeResult {
        let problems = probeProblems(state: state, tls: tls, expect: expect, options: options)
        return ProbeResult(target: ProbeTarget(text: "x:443", host: "x", port: 443), address: "192.0.2.1",
                           attempts: [], state: state, healthy: problems.isEmpty, latency: nil, loss: 0,
                           tls: tls, expect: expect, problems: problems, time: Date())
    }

    @Test func healthAndPluginStatus() {
        var options = ProbeOptions()
        options.tls = true
        #expect(result(.open, tls: tls(days: 90, verified: true), options: options).healthy)
        #expect(result(.open, tls: tls(days: 90, verified: true), options: options).pluginStatus(options: options) == .ok)
        // Within --warn-days: unhealthy, WARNING; within --critical-days: CRITICAL.
        let soon = result(.open, tls: tls(days: 9, verified: true), options: options)
        #expect(!soon.healthy && soon.pluginStatus(options: options) == .warning)
        #expect(result(.open, tls: tls(days: 3, verified: true), options: options).pluginStatus(options: options) == .critical)
        // Unverified: CRITICAL unless --insecure, which never hides an expiry.
        #expect(result(.open, tls: tls(days: 90, verified: false), options: options).pluginStatus(options: options) == .critical)
        options.insecure = true
        #expect(result(.open, tls: tls(days: 90, verified: false), options: options).healthy)
        #expect(!result(.open, tls: tls(days: 9, verified: false), options: options).healthy)
        // --tls asked and no report (the handshake failed): CRITICAL.
        #expect(result(.open, options: options).pluginStatus(options: options) == .critical)
        let plain = ProbeOptions()
        #expect(result(.closed, options: plain).pluginStatus(options: plain) == .critical)
        #expect(result(.openFiltered, options: plain).pluginStatus(options: plain) == .warning)
        #expect(!result(.open, expect: ExpectReport(matched: false, received: "x"), options: plain).healthy)
        #expect(result(.open, expect: ExpectReport(matched: false, received: "x"), options: plain).pluginStatus(options: plain) == .critical)
    }

    /// UNKNOWN ranks between WARNING and CRITICAL when several checks combine.
    @Test func pluginStatusOrder() {
        #expect([PluginStatus.ok, .warning, .unknown].max() == .unknown)
        #expect([PluginStatus.unknown, .critical].max() == .critical)
        #expect(PluginStatus.allCases.map(\.rawValue) == [0, 1, 2, 3])
    }
}

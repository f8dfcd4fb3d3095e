// The audit's judgement of TLS handshake reports, and which listeners it tries TLS on.

import Foundation
import Testing
@testable import PortwatchCore

private func report(days: Int, version: String = "TLSv1.3", verifyError: String? = nil) -> TLSReport {
    TLSReport(version: version, cipher: "", alpn: nil, subject: "CN=test", issuer: "CN=test", sans: [],
              notAfter: Date(timeIntervalSince1970: 0), daysLeft: days, verified: verifyError == nil,
              verifyError: verifyError, handshakeMs: 1)
}

private func severities(_ r: TLSReport, _ exposure: Exposure = .any) -> [Severity] {
    tlsFindings(r, proto: .tcp, port: 443, exposure: exposure).map(\.severity)
}

@Suite("audit: TLS findings")
struct AuditTLSTests {
    @Test func expiryThresholds() {
        #expect(severities(report(days: 90)) == [])
        #expect(severities(report(days: certificateWarningDays)) == [])
        #expect(severities(report(days: certificateWarningDays - 1)) == [.medium])
        #expect(severities(report(days: 0)) == [.medium])
        #expect(severities(report(days: -1, verifyError: "certificate has expired")) == [.high])
        let reason = tlsFindings(report(days: 5), proto: .tcp, port: 443, exposure: .any).first?.reason ?? ""
        #expect(reason.contains("5 days") && reason.contains("\(certificateWarningDays)"), "\(reason)")
    }

    @Test func oldProtocolsAreMedium() {
        #expect(severities(report(days: 90, version: "TLSv1.0")) == [.medium])
        #expect(severities(report(days: 90, version: "TLSv1.1")) == [.medium])
        #expect(severities(report(days: 90, version: "TLSv1.2")) == [])
    }

    @Test func untrustedOnlyMattersOffLoopback() {
        let selfSigned = report(days: 90, verifyError: "self-signed certificate")
        #expect(severities(selfSigned, .any) == [.low])
        #expect(severities(selfSigned, .address) == [.low])
        #expect(severities(selfSigned, .loopback) == [])
        // The audit connects by address: a name mismatch says nothing about the certificate.
        #expect(severities(report(days: 90, verifyError: "hostname mismatch: certificate is for a.example, not 127.0.0.1")) == [])
    }

    @Test func targetsAreTLSPortsOverLoopback() {
        func row(_ proto: TransportProtocol, _ address: String, _ port: UInt16) -> PortSummary {
            var s = PortSummary(proto: proto, port: port, role: .local)
            s.listeners = [ListenerInfo(local: Endpoint(address: IPAddress(address)!, port: port), acceptQueue: 0, backlog: 128,
                                        inode: 1, uid: 0, drops: 0, v6only: nil)]
            return s
        }
        let rows = [row(.tcp, "0.0.0.0", 443), row(.tcp, "::", 8443), row(.tcp, "192.0.2.7", 993), row(.tcp, "0.0.0.0", 8080),
                    row(.udp, "0.0.0.0", 443)]
        let known = tlsAuditTargets(rows, everyListener: false)
        #expect(known.map(\.key.port) == [443, 8443, 993])
        #expect(known.map(\.host) == ["127.0.0.1", "::1", "192.0.2.7"])
        #expect(tlsAuditTargets(rows, everyListener: true).map(\.key.port) == [443, 8443, 993, 8080])
    }
}

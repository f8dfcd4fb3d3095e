import Foundation
import PortwatchCore
import SwiftASN1
import X509

/// What the server's certificate says, and whether its chain is trusted for the name.
struct CertificateFacts: Sendable {
    var subject: String
    var issuer: String
    var sans: [String]
    var notAfter: Date
    var daysLeft: Int
    var verifyError: String?
}

/// Reads the leaf of a presented chain (DER, leaf first) and verifies the chain against `roots`
/// for `name` (a DNS name or an IP literal) at `now`. The first failing check names the reason,
/// in the order OpenSSL reports them: validity dates, chain of trust, then the name.
func checkCertificate(chain der: [[UInt8]], name: String, roots: CertificateStore, now: Date) async throws -> CertificateFacts {
    let certificates = try der.map { try Certificate(derEncoded: $0) }
    guard let leaf = certificates.first else { throw CertificateProblem("the server presented no certificate") }
    var facts = CertificateFacts(subject: leaf.subject.description, issuer: leaf.issuer.description,
                                 sans: subjectAlternativeNames(leaf), notAfter: leaf.notValidAfter,
                                 daysLeft: wholeDays(from: now, to: leaf.notValidAfter), verifyError: nil)
    if now > leaf.notValidAfter {
        facts.verifyError = "certificate has expired"
        return facts
    }
    if now < leaf.notValidBefore {
        facts.verifyError = "certificate is not yet valid"
        return facts
    }
    var trust = Verifier(rootCertificates: roots) { RFC5280Policy() }
    let intermediates = CertificateStore(certificates.dropFirst())
    if case .couldNotValidate(let failures) = await trust.validate(leaf: leaf, intermediates: intermediates) {
        if leaf.subject == leaf.issuer {
            facts.verifyError = "self-signed certificate"
        } else if let first = failures.first {
            facts.verifyError = "untrusted chain: \(first.policyFailureReason)"
        } else {
            facts.verifyError = "unable to get local issuer certificate"
        }
        return facts
    }
    // The name alone: the leaf as its own root leaves only the identity policy to decide. The
    // RFC 5280 policy is there because it handles the critical extensions (basicConstraints)
    // that the identity policy alone would reject as unknown.
    let ip = IPAddress(name)
    var identity = Verifier(rootCertificates: CertificateStore([leaf])) {
        RFC5280Policy()
        ServerIdentityPolicy(serverHostname: ip == nil ? name : nil, serverIP: ip == nil ? nil : name)
    }
    if case .couldNotValidate = await identity.validate(leaf: leaf, intermediates: CertificateStore()) {
        let names = facts.sans.isEmpty ? facts.subject : facts.sans.joined(separator: ", ")
        facts.verifyError = "hostname mismatch: certificate is for \(names), not \(name)"
    }
    return facts
}

/// An unreadable certificate or trust file.
struct CertificateProblem: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Whole days left (rounded down): a certificate made with `-days 10` a second ago has 9.
func wholeDays(from now: Date, to end: Date) -> Int {
    Int((end.timeIntervalSince(now) / 86_400).rounded(.down))
}

/// DNS names and IP addresses of the subjectAltName extension, in certificate order.
private func subjectAlternativeNames(_ certificate: Certificate) -> [String] {
    guard let names = try? certificate.extensions.subjectAlternativeNames else { return [] }
    return names.compactMap { name in
        switch name {
        case .dnsName(let dns): return dns
        case .ipAddress(let octets):
            return Array(octets.bytes).withUnsafeBytes { IPAddress(bytes: $0)?.description }
        case .rfc822Name(let mail): return "email:\(mail)"
        case .uniformResourceIdentifier(let uri): return "URI:\(uri)"
        default: return nil
        }
    }
}

/// The trust roots for verification: the PEM file given with `--ca`, else the system's.
func trustRoots(caFile: String?) throws -> CertificateStore {
    guard let caFile else { return CertificateStore.systemTrustRoots }
    guard let text = try? String(contentsOfFile: caFile, encoding: .utf8) else {
        throw CertificateProblem("cannot read CA file '\(caFile)'")
    }
    let certificates = try pemCertificates(text, file: caFile)
    if certificates.isEmpty { throw CertificateProblem("no certificate in CA file '\(caFile)'") }
    return CertificateStore(certificates)
}

/// Every `CERTIFICATE` block of a PEM text.
func pemCertificates(_ text: String, file: String) throws -> [Certificate] {
    var out: [Certificate] = []
    var body: String?
    for line in text.split(whereSeparator: \.isNewline) {
        let trimmed = line.trimmingCharacters(in: .whitespaces)
        if trimmed == "-----BEGIN CERTIFICATE-----" {
            body = ""
        } else if trimmed == "-----END CERTIFICATE-----", let b64 = body {
            guard let der = Data(base64Encoded: b64), let certificate = try? Certificate(derEncoded: Array(der)) else {
                throw CertificateProblem("CA file '\(file)' holds a certificate that does not parse")
            }
            out.append(certificate)
            body = nil
        } else if body != nil {
            body! += trimmed
        }
    }
    return out
}

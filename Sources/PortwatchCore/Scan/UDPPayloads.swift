/// What a UDP probe carries: a request the service answers, for the services that stay silent
/// on an empty datagram; empty for every other port.
public func udpPayload(port: UInt16) -> [UInt8] {
    switch port {
    case 53, 5353: return dnsQuery
    case 123: return ntpRequest
    case 161: return snmpGetRequest
    default: return []
    }
}

/// A DNS query for the root's NS records (any server answers, even with REFUSED).
private let dnsQuery: [UInt8] = [
    0x70, 0x77,             // id
    0x01, 0x00,             // flags: standard query, recursion desired
    0x00, 0x01,             // one question
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00,                   // the root name
    0x00, 0x02,             // type NS
    0x00, 0x01,             // class IN
]

/// An NTP version 4 client request: 48 bytes, LI 0, VN 4, mode 3; the rest zero.
private let ntpRequest: [UInt8] = [0x23] + [UInt8](repeating: 0, count: 47)

/// An SNMPv1 GetRequest for sysDescr.0 (1.3.6.1.2.1.1.1.0) with community "public", BER-encoded.
private let snmpGetRequest: [UInt8] = {
    let oid: [UInt8] = [0x06, 0x08, 0x2b, 0x06, 0x01, 0x02, 0x01, 0x01, 0x01, 0x00]
    let varbind: [UInt8] = tlv(0x30, oid + [0x05, 0x00])
    let pdu: [UInt8] = tlv(0xa0, [0x02, 0x01, 0x01, 0x02, 0x01, 0x00, 0x02, 0x01, 0x00] + tlv(0x30, varbind))
    let community: [UInt8] = tlv(0x04, Array("public".utf8))
    return tlv(0x30, [0x02, 0x01, 0x00] + community + pdu)
}()

/// A BER type-length-value with a short-form length (every part here is under 128 bytes).
private func tlv(_ type: UInt8, _ value: [UInt8]) -> [UInt8] { [type, UInt8(value.count)] + value }

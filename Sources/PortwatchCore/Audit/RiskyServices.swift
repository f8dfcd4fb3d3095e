// Services that should not face a network as they usually run: no authentication, plaintext
// credentials, or root on the host for whoever connects. Known by port, and better by what
// the service itself answers on loopback (a redis that says +PONG to PING has no password).

/// How bad a finding is.
public enum Severity: String, Sendable, Hashable, Codable, CaseIterable, Comparable {
    case low, medium, high

    private var rank: Int { self == .low ? 0 : (self == .medium ? 1 : 2) }
    public static func < (a: Severity, b: Severity) -> Bool { a.rank < b.rank }
}

/// One thing the operator should look at.
public struct AuditFinding: Sendable, Hashable {
    public var severity: Severity
    public var proto: TransportProtocol
    public var port: UInt16
    public var reason: String

    public init(severity: Severity, proto: TransportProtocol, port: UInt16, reason: String) {
        self.severity = severity
        self.proto = proto
        self.port = port
        self.reason = reason
    }
}

/// A service that is risky when exposed, known by its port.
public struct RiskyService: Sendable, Hashable {
    public var proto: TransportProtocol
    public var port: UInt16
    public var name: String
    public var severity: Severity
    public var reason: String
    /// What to send to make it say what it is (nil: read its greeting).
    var probe: BannerProbe?

    /// The services the audit knows, by port.
    public static let known: [RiskyService] = [
        .init(proto: .tcp, port: 21, name: "ftp", severity: .medium, reason: "FTP sends logins and data in plaintext", probe: .greeting),
        .init(proto: .tcp, port: 23, name: "telnet", severity: .high, reason: "telnet sends logins in plaintext", probe: nil),
        .init(proto: .tcp, port: 512, name: "rexec", severity: .high, reason: "rexec: plaintext passwords", probe: nil),
        .init(proto: .tcp, port: 513, name: "rlogin", severity: .high, reason: "rlogin: host-based trust, plaintext", probe: nil),
        .init(proto: .tcp, port: 514, name: "rsh", severity: .high, reason: "rsh: host-based trust, plaintext", probe: nil),
        .init(proto: .udp, port: 69, name: "tftp", severity: .high, reason: "TFTP has no authentication", probe: nil),
        .init(proto: .tcp, port: 111, name: "rpcbind", severity: .medium, reason: "rpcbind lists RPC services to anyone", probe: nil),
        .init(proto: .udp, port: 111, name: "rpcbind", severity: .medium, reason: "rpcbind lists RPC services and amplifies UDP", probe: nil),
        .init(proto: .tcp, port: 139, name: "netbios-ssn", severity: .medium, reason: "NetBIOS/SMB file sharing exposed", probe: nil),
        .init(proto: .tcp, port: 445, name: "smb", severity: .medium, reason: "SMB file sharing exposed", probe: nil),
        .init(proto: .udp, port: 161, name: "snmp", severity: .medium, reason: "SNMP community strings travel in plaintext", probe: nil),
        .init(proto: .tcp, port: 873, name: "rsync", severity: .medium, reason: "rsync daemon modules may be readable without a password", probe: .greeting),
        .init(proto: .tcp, port: 1433, name: "mssql", severity: .medium, reason: "database server exposed to the network", probe: nil),
        .init(proto: .tcp, port: 1521, name: "oracle", severity: .medium, reason: "database listener exposed to the network", probe: nil),
        .init(proto: .tcp, port: 2049, name: "nfs", severity: .medium, reason: "NFS exports exposed to the network", probe: nil),
        .init(proto: .tcp, port: 2375, name: "docker", severity: .high, reason: "Docker API without TLS: root on this host for anyone who connects", probe: nil),
        .init(proto: .tcp, port: 2379, name: "etcd", severity: .high, reason: "etcd client API: cluster secrets, often without client certificates", probe: nil),
        .init(proto: .tcp, port: 3306, name: "mysql", severity: .medium, reason: "MySQL exposed to the network", probe: .greeting),
        .init(proto: .tcp, port: 5432, name: "postgresql", severity: .medium, reason: "PostgreSQL exposed to the network", probe: nil),
        .init(proto: .tcp, port: 5900, name: "vnc", severity: .medium, reason: "VNC: weak or no authentication, plaintext", probe: .greeting),
        .init(proto: .tcp, port: 5984, name: "couchdb", severity: .high, reason: "CouchDB HTTP API, often without authentication", probe: nil),
        .init(proto: .tcp, port: 6000, name: "x11", severity: .high, reason: "X11 display: keyboard and screen of a session", probe: nil),
        .init(proto: .tcp, port: 6379, name: "redis", severity: .high, reason: "redis is plaintext and often has no password", probe: .redis),
        .init(proto: .tcp, port: 9200, name: "elasticsearch", severity: .high, reason: "Elasticsearch HTTP API, often without authentication", probe: nil),
        .init(proto: .tcp, port: 10250, name: "kubelet", severity: .high, reason: "kubelet API: runs commands in pods when authentication is off", probe: nil),
        .init(proto: .tcp, port: 11211, name: "memcached", severity: .high, reason: "memcached has no authentication", probe: .memcached),
        .init(proto: .udp, port: 11211, name: "memcached", severity: .high, reason: "memcached over UDP: no authentication, a DDoS amplifier", probe: nil),
        .init(proto: .tcp, port: 27017, name: "mongodb", severity: .high, reason: "MongoDB, often without authentication", probe: nil),
    ]

    /// The known risky service on a port, if any.
    public static func on(_ proto: TransportProtocol, _ port: UInt16) -> RiskyService? {
        known.first { $0.proto == proto && $0.port == port }
    }
}

/// How to make a service say what it is.
enum BannerProbe: Sendable, Hashable {
    /// Read what it says first (FTP, VNC, MySQL, rsync).
    case greeting
    /// `PING`: `+PONG` without a password, `-NOAUTH` with one.
    case redis
    /// `version`: `VERSION x` (memcached never asks for credentials over its text protocol).
    case memcached

    var request: [UInt8]? {
        switch self {
        case .greeting: return nil
        case .redis: return Array("PING\r\n".utf8)
        case .memcached: return Array("version\r\n".utf8)
        }
    }
}

/// What a banner says about the service: severity and reason, replacing the port's defaults.
func judgeBanner(_ service: RiskyService, _ banner: [UInt8]) -> (Severity, String)? {
    let text = bannerText(banner)
    switch service.probe {
    case .redis:
        if text.hasPrefix("+PONG") { return (.high, "redis answers PING without a password (\(text))") }
        if text.hasPrefix("-NOAUTH") || text.contains("AUTH") {
            return (.low, "redis asks for a password, but speaks plaintext (\(text))")
        }
        if text.hasPrefix("-DENIED") { return (.low, "redis in protected mode refuses outside clients (\(text))") }
        return nil
    case .memcached:
        if text.hasPrefix("VERSION") { return (.high, "memcached answers without authentication (\(text))") }
        return nil
    case .greeting:
        guard !text.isEmpty else { return nil }
        return (service.severity, "\(service.reason) (banner: \(String(text.prefix(60))))")
    case nil:
        return nil
    }
}

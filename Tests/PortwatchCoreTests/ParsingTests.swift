import Testing
@testable import PortwatchCore

/// A small `/etc/services` with the file's quirks: comments, aliases, blank lines, tabs, a
/// protocol portwatch ignores, a duplicate name, and ports listed under two names.
private let servicesFixture = """
    # Network services, Internet style
    #
    ssh\t\t22/tcp\t\t\t\t# SSH Remote Login Protocol
    domain\t\t53/tcp
    domain\t\t53/udp\t\t# Domain Name Server
    http\t\t80/tcp\t\twww www-http\t# WorldWideWeb HTTP

    ntp\t\t123/udp
    https\t\t443/tcp
    https\t\t443/udp\t\t\t# HTTP/3
    snmp-trap\t162/udp\t\tsnmptrap
    webcache-old\t8080/tcp
    http-alt\t8080/tcp\twebcache
    sctp-only\t9999/sctp
    bogus\t\tnotaport/tcp
    lonely
    alt-ssh\t2222/tcp\tssh
    """

private let services = ServiceDatabase(parsing: servicesFixture)

private func spec(_ text: String) throws -> PortSpec {
    try PortSpec(parsing: text, services: services)
}

/// Runs `body` expecting a `.usage` error, and returns its message ("" when nothing was thrown).
private func usageMessage(_ body: () throws(PortwatchError) -> Void) -> String {
    do {
        try body()
    } catch {
        #expect(error.kind == .usage)
        #expect(!error.message.contains("\n"))
        return error.message
    }
    Issue.record("expected a usage error")
    return ""
}

// MARK: - ServiceDatabase

@Suite struct ServiceDatabaseTests {
    @Test func namesByPortAndProtocol() {
        #expect(services.name(port: 22, proto: .tcp) == "ssh")
        #expect(services.name(port: 22, proto: .udp) == nil)
        #expect(services.name(port: 53, proto: .udp) == "domain")
        #expect(services.name(port: 123, proto: .udp) == "ntp")
        #expect(services.name(port: 123, proto: .tcp) == nil)
        // The first name listed for a port wins.
        #expect(services.name(port: 8080, proto: .tcp) == "webcache-old")
        #expect(services.name(port: 9999, proto: .tcp) == nil)
    }

    @Test func portsByNameAndAlias() {
        #expect(services.ports(named: "domain", proto: nil).map(\.0) == [53, 53])
        #expect(services.ports(named: "domain", proto: nil).map(\.1) == [.tcp, .udp])
        #expect(services.ports(named: "domain", proto: .udp).map(\.1) == [.udp])
        #expect(services.ports(named: "www", proto: nil).map(\.0) == [80])
        #expect(services.ports(named: "www-http", proto: .tcp).map(\.0) == [80])
        #expect(services.ports(named: "webcache", proto: .tcp).map(\.0) == [8080])
        #expect(services.ports(named: "HTTP", proto: .tcp).map(\.0) == [80])
        #expect(services.ports(named: "ntp", proto: .tcp).isEmpty)
        // An alias equal to another service's name adds to it; the listed name comes first.
        #expect(services.ports(named: "ssh", proto: .tcp).map(\.0) == [22, 2222])
    }

    @Test func skipsCommentsAndMalformedLines() {
        #expect(services.ports(named: "sctp-only", proto: nil).isEmpty)
        #expect(services.ports(named: "bogus", proto: nil).isEmpty)
        #expect(services.ports(named: "lonely", proto: nil).isEmpty)
        #expect(services.ports(named: "#", proto: nil).isEmpty)
        #expect(services.ports(named: "SSH", proto: nil).count == 2)
        #expect(ServiceDatabase(parsing: "").isEmpty)
        #expect(ServiceDatabase(parsing: "# only a comment\n\n").isEmpty)
        let crlf = ServiceDatabase(parsing: "ssh 22/tcp\r\nhttp 80/TCP\r\n")
        #expect(crlf.name(port: 80, proto: .tcp) == "http")
    }

    @Test func systemDatabase() {
        #expect(ServiceDatabase.system.name(port: 22, proto: .tcp) == "ssh")
        #expect(ServiceDatabase.system.ports(named: "https", proto: .tcp).map(\.0) == [443])
    }

    @Test func builtInTable() {
        let db = ServiceDatabase.builtIn
        #expect(db.name(port: 22, proto: .tcp) == "ssh")
        #expect(db.name(port: 53, proto: .udp) == "domain")
        #expect(db.name(port: 123, proto: .udp) == "ntp")
        #expect(db.name(port: 5432, proto: .tcp) == "postgresql")
        #expect(db.ports(named: "postgres", proto: .tcp).map(\.0) == [5432])
        #expect(db.ports(named: "imap", proto: .tcp).map(\.0) == [143])
        #expect(db.ports(named: "redis", proto: nil).map(\.0) == [6379])
    }
}

// MARK: - PortSpec

@Suite struct PortSpecTests {
    @Test func singleNumber() throws {
        let s = try spec("8080")
        #expect(s.items == [.init(range: 8080...8080, proto: nil)])
        #expect(s.contains(port: 8080, proto: .tcp))
        #expect(s.contains(port: 8080, proto: .udp))
        #expect(!s.contains(port: 8081, proto: .tcp))
        #expect(s.isSinglePort)
        #expect(s.portCount == 1)
        #expect(s.text == "8080")
        #expect(s.protocols(default: [.tcp]) == [.tcp])
    }

    @Test func rangeIsInclusive() throws {
        let s = try spec("8000-8100")
        #expect(s.contains(port: 8000, proto: .tcp))
        #expect(s.contains(port: 8100, proto: .udp))
        #expect(!s.contains(port: 7999, proto: .tcp))
        #expect(!s.contains(port: 8101, proto: .tcp))
        #expect(s.portCount == 101)
        #expect(!s.isSinglePort)
        #expect(try spec("1-65535").portCount == 65535)
        #expect(try spec("7-7").isSinglePort)
    }

    @Test func listAndProtocols() throws {
        let s = try spec("22, 80,443/udp,53/TCP")
        #expect(s.ranges(for: .tcp) == [22...22, 53...53, 80...80])
        #expect(s.ranges(for: .udp) == [22...22, 80...80, 443...443])
        #expect(s.contains(port: 443, proto: .udp))
        #expect(!s.contains(port: 443, proto: .tcp))
        #expect(!s.contains(port: 53, proto: .udp))
        #expect(s.protocols(default: [.tcp]) == [.tcp, .udp])
        #expect(try spec("53/udp").protocols(default: [.tcp]) == [.udp])
        #expect(try spec("53/udp,54/udp").protocols(default: [.tcp]) == [.udp])
        #expect(try spec("53").protocols(default: [.tcp, .udp]) == [.tcp, .udp])
    }

    @Test func mergesOverlappingAndAdjacentRanges() throws {
        let s = try spec("10-20,15-30,31,40-50,5,1-2,3")
        #expect(s.ranges(for: .tcp) == [1...3, 5...5, 10...31, 40...50])
        #expect(s.portCount == 3 + 1 + 22 + 11)
        #expect(s.ports(for: .udp).prefix(5) == [1, 2, 3, 5, 10])
        #expect(try spec("80,80,80").portCount == 1)
        #expect(try spec("80/tcp,80/udp").isSinglePort)
        #expect(try spec("65535,65534").ranges(for: .tcp) == [65534...65535])
    }

    @Test func containsAgreesWithExpansion() throws {
        let s = try spec("1-3,7,10-12/udp,20-25,24-30/tcp,65535")
        for proto in TransportProtocol.allCases {
            let expanded = Set(s.ports(for: proto))
            for port in UInt16(0)...40 {
                #expect(s.contains(port: port, proto: proto) == expanded.contains(port), "\(port)/\(proto)")
            }
            #expect(s.contains(port: 65535, proto: proto))
        }
        #expect(!PortSpec(items: []).contains(port: 1, proto: .tcp))
    }

    @Test func serviceNames() throws {
        let ssh = try spec("ssh")
        #expect(ssh.contains(port: 22, proto: .tcp))
        #expect(ssh.contains(port: 2222, proto: .tcp))
        #expect(!ssh.contains(port: 22, proto: .udp))

        let domain = try spec("domain")
        #expect(domain.items == [.init(range: 53...53, proto: .tcp, protocolFromService: true),
                                 .init(range: 53...53, proto: .udp, protocolFromService: true)])
        #expect(domain.protocols(default: [.tcp]) == [.tcp, .udp])
        #expect(domain.isSinglePort)

        let ntp = try spec("ntp")
        #expect(ntp.protocols(default: [.tcp]) == [.udp])
        #expect(ntp.contains(port: 123, proto: .udp))

        #expect(try spec("domain/udp").items == [.init(range: 53...53, proto: .udp)])
        #expect(try spec("WWW").contains(port: 80, proto: .tcp))
        #expect(try spec("http-alt,https/UDP").ranges(for: .udp) == [443...443])
        #expect(try spec("snmp-trap").contains(port: 162, proto: .udp))
    }

    @Test func itemsAreEditable() throws {
        var s = try spec("80")
        s.items.append(.init(range: 90...95, proto: .udp))
        #expect(s.contains(port: 92, proto: .udp))
        #expect(!s.contains(port: 92, proto: .tcp))
        #expect(PortSpec(items: [.init(range: 1...5, proto: .tcp), .init(range: 9...9)]).text == "1-5/tcp,9")
    }

    /// Each bad input, and a fragment its message must contain (the offending part of the input).
    static let badInputs: [(input: String, mentions: String)] = [
        ("65536", "'65536'"),
        ("99999999999999999999", "'99999999999999999999'"),
        ("-1", "'-1'"),
        ("0", "'0'"),
        ("0-10", "'0-10'"),
        ("1-65536", "'65536'"),
        ("abc", "'abc'"),
        ("80x", "'80x'"),
        ("8.5", "'8.5'"),
        ("80-", "'80-'"),
        ("-80", "'-80'"),
        ("-", "'-'"),
        ("1-2-3", "'1-2-3'"),
        ("90-80", "'90-80'"),
        ("80,,81", "'80,,81'"),
        ("80,", "'80,'"),
        (",80", "',80'"),
        ("", "''"),
        ("   ", "'   '"),
        ("80/sctp", "'sctp'"),
        ("80/", "'80/'"),
        ("/tcp", "'/tcp'"),
        ("80/tcp/udp", "'tcp/udp'"),
        ("ntp/tcp", "'ntp/tcp'"),
        ("no-such-service", "'no-such-service'"),
        ("a$b", "'a$b'"),
        ("8 0", "'8 0'"),
        ("22,80,nope,443", "'nope'"),
        ("٣", "'٣'"),
    ]

    @Test(arguments: badInputs)
    func rejectsBadInput(_ bad: (input: String, mentions: String)) {
        let message = usageMessage { () throws(PortwatchError) in _ = try PortSpec(parsing: bad.input, services: services) }
        #expect(message.contains(bad.mentions), "\(message)")
    }

    @Test func errorMessagesAreSpecific() {
        func message(_ text: String) -> String {
            usageMessage { () throws(PortwatchError) in _ = try PortSpec(parsing: text, services: services) }
        }
        #expect(message("65536") == "invalid port '65536': must be 1-65535")
        #expect(message("0").contains("not a real port"))
        #expect(message("90-80").contains("greater than"))
        #expect(message("80-").contains("missing the end"))
        #expect(message("-80").contains("both ends"))
        #expect(message("80,,81").contains("empty item"))
        #expect(message("").contains("empty port list"))
        #expect(message("80/sctp").contains("unknown protocol"))
        #expect(message("nope").contains("unknown service"))
        #expect(message("ntp/tcp").contains("not listed for tcp"))
        #expect(message("80x").contains("not a number"))
        #expect(message("80\n81") == "invalid port '80?81': not a number (expected 1-65535, a range A-B or a service name)")
    }

    @Test func limits() {
        let long = String(repeating: "1,", count: 2100) + "1"
        #expect(long.utf8.count > PortSpec.maxLength)
        #expect(usageMessage { () throws(PortwatchError) in _ = try PortSpec(parsing: long, services: services) }
            .contains("argument too long"))
        // Just under the length limit parses.
        let fits = String(repeating: "1,", count: 2047) + "1"
        #expect(throws: Never.self) { try PortSpec(parsing: fits, services: services) }
        // The item limit, reachable through the internal initializer with a lower limit.
        #expect(usageMessage { () throws(PortwatchError) in
            _ = try PortSpec(parsing: "1,2,3,4", services: services, maxLength: 100, maxItems: 3)
        }.contains("too many items"))
    }
}

// MARK: - Durations and sizes

@Suite struct UnitTests {
    @Test func durations() throws {
        #expect(try parseDuration("500ms") == .milliseconds(500))
        #expect(try parseDuration("5s") == .seconds(5))
        #expect(try parseDuration("2m") == .seconds(120))
        #expect(try parseDuration("1h") == .seconds(3600))
        #expect(try parseDuration("7d") == .seconds(7 * 86400))
        #expect(try parseDuration("2w") == .seconds(14 * 86400))
        #expect(try parseDuration("1.5s") == .milliseconds(1500))
        #expect(try parseDuration("0.5s") == .milliseconds(500))
        #expect(try parseDuration(".25s") == .milliseconds(250))
        #expect(try parseDuration("250us") == .microseconds(250))
        #expect(try parseDuration("250µs") == .microseconds(250))
        #expect(try parseDuration("250\u{3BC}s") == .microseconds(250))
        #expect(try parseDuration("10ns") == .nanoseconds(10))
        #expect(try parseDuration("1m30s") == .seconds(90))
        #expect(try parseDuration("1h2m3s") == .seconds(3723))
        #expect(try parseDuration("1.5h") == .seconds(5400))
        #expect(try parseDuration("30") == .seconds(30))
        #expect(try parseDuration("2.5") == .milliseconds(2500))
        #expect(try parseDuration("0") == .zero)
        #expect(try parseDuration(" 5s ") == .seconds(5))
        #expect(try parseDuration("36525d") == .seconds(36525 * 86400))
        #expect(try parseDuration("1.0000000001s") == .seconds(1))
    }

    static let badDurations: [(input: String, mentions: String)] = [
        ("", "empty duration"),
        ("-5s", "'-5s'"),
        ("5x", "'x'"),
        ("5S", "'S'"),
        ("s", "'s'"),
        ("1m30", "'1m30'"),
        ("1 m", "'1 m'"),
        ("1..5s", "'1..5s'"),
        ("36526d", "'36526d'"),
        ("99999999999999999999s", "'99999999999999999999s'"),
        ("9223372036854775807h", "'9223372036854775807h'"),
        ("1e3s", "'1e3s'"),
        (String(repeating: "1", count: 100) + "s", "too long"),
    ]

    @Test(arguments: badDurations)
    func rejectsBadDuration(_ bad: (input: String, mentions: String)) {
        let message = usageMessage { () throws(PortwatchError) in _ = try parseDuration(bad.input) }
        #expect(message.contains(bad.mentions), "\(message)")
    }

    @Test func formatsDurations() throws {
        #expect(formatDuration(.zero) == "0s")
        #expect(formatDuration(.nanoseconds(10)) == "10ns")
        #expect(formatDuration(.microseconds(250)) == "250us")
        #expect(formatDuration(.nanoseconds(1_500)) == "1.5us")
        #expect(formatDuration(.milliseconds(250)) == "250ms")
        #expect(formatDuration(.microseconds(1_500)) == "1.5ms")
        #expect(formatDuration(.nanoseconds(999_999_999)) == "1s")
        #expect(formatDuration(.milliseconds(1500)) == "1.5s")
        #expect(formatDuration(.seconds(5)) == "5s")
        #expect(formatDuration(.milliseconds(59_990)) == "1m")
        #expect(formatDuration(.seconds(120)) == "2m")
        #expect(formatDuration(.seconds(90)) == "1m30s")
        #expect(formatDuration(.seconds(3600)) == "1h")
        #expect(formatDuration(.seconds(3900)) == "1h5m")
        #expect(formatDuration(.seconds(7 * 86400)) == "7d")
        #expect(formatDuration(.seconds(86400 + 7200 + 60)) == "1d2h")
        #expect(formatDuration(.milliseconds(-1500)) == "-1.5s")
        // What it prints, it reads back.
        for text in ["250us", "250ms", "1.5s", "5s", "2m", "1m30s", "1h5m", "7d"] {
            #expect(formatDuration(try parseDuration(text)) == text)
        }
    }

    @Test func sizes() throws {
        #expect(try parseSize("0") == 0)
        #expect(try parseSize("512") == 512)
        #expect(try parseSize("512B") == 512)
        #expect(try parseSize("10KB") == 10_000)
        #expect(try parseSize("10kb") == 10_000)
        #expect(try parseSize("10K") == 10_000)
        #expect(try parseSize("5MB") == 5_000_000)
        #expect(try parseSize("1GB") == 1_000_000_000)
        #expect(try parseSize("1.5GB") == 1_500_000_000)
        #expect(try parseSize("2TB") == 2_000_000_000_000)
        #expect(try parseSize("1KiB") == 1024)
        #expect(try parseSize("64kib") == 65_536)
        #expect(try parseSize("5MiB") == 5 * 1_048_576)
        #expect(try parseSize("1GiB") == 1 << 30)
        #expect(try parseSize("0.5KiB") == 512)
        #expect(try parseSize("10 MB") == 10_000_000)
        #expect(try parseSize("15EiB") == 15 << 60)
        #expect(try parseSize("18446744073709551615") == UInt64.max)
    }

    static let badSizes: [(input: String, mentions: String)] = [
        ("", "empty size"),
        ("-5MB", "'-5MB'"),
        ("5XB", "'XB'"),
        ("MB", "'MB'"),
        ("1.2.3MB", "'1.2.3MB'"),
        ("16EiB", "'16EiB'"),
        ("18446744073709551616", "'18446744073709551616'"),
        ("99999999999999999999999GB", "'99999999999999999999999GB'"),
        (String(repeating: "9", count: 70), "too long"),
    ]

    @Test(arguments: badSizes)
    func rejectsBadSize(_ bad: (input: String, mentions: String)) {
        let message = usageMessage { () throws(PortwatchError) in _ = try parseSize(bad.input) }
        #expect(message.contains(bad.mentions), "\(message)")
    }

    @Test func formatsBytes() {
        #expect(formatBytes(0) == "0 B")
        #expect(formatBytes(999) == "999 B")
        #expect(formatBytes(1000) == "1.0 KB")
        #expect(formatBytes(1234) == "1.2 KB")
        #expect(formatBytes(13_400_000) == "13.4 MB")
        #expect(formatBytes(99_940) == "99.9 KB")
        #expect(formatBytes(99_960) == "100 KB")
        #expect(formatBytes(512_000_000) == "512 MB")
        #expect(formatBytes(999_999) == "1.0 MB")
        #expect(formatBytes(UInt64.max) == "18.4 EB")
    }

    @Test func formatsRates() {
        #expect(formatRate(bitsPerSecond: 0) == "0 bit/s")
        #expect(formatRate(bitsPerSecond: 840) == "840 bit/s")
        #expect(formatRate(bitsPerSecond: 1_200_000) == "1.2 Mbit/s")
        #expect(formatRate(bitsPerSecond: 10e9) == "10.0 Gbit/s")
        #expect(formatRate(bitsPerSecond: 999_700) == "1.0 Mbit/s")
        #expect(formatRate(bitsPerSecond: 250e3) == "250 kbit/s")
        #expect(formatRate(bitsPerSecond: -2000) == "-2.0 kbit/s")
        // Garbage from arithmetic must print, not trap.
        #expect(formatRate(bitsPerSecond: .nan) == "n/a")
        #expect(formatRate(bitsPerSecond: .infinity) == "n/a")
        #expect(formatRate(bitsPerSecond: 1e300).hasSuffix("Ebit/s"))
    }
}

// MARK: - Hosts and targets

@Suite struct TargetTests {
    @Test func hosts() throws {
        #expect(try HostPort.parseHost("example.com") == "example.com")
        #expect(try HostPort.parseHost("Example.COM.") == "example.com.")
        #expect(try HostPort.parseHost("localhost") == "localhost")
        #expect(try HostPort.parseHost("app_db_1") == "app_db_1")
        #expect(try HostPort.parseHost("a-b.c-d.example") == "a-b.c-d.example")
        #expect(try HostPort.parseHost("1.2.3.4") == "1.2.3.4")
        #expect(try HostPort.parseHost("::1") == "::1")
        #expect(try HostPort.parseHost("[::1]") == "::1")
        #expect(try HostPort.parseHost("2001:DB8:0:0::1") == "2001:db8::1")
        #expect(try HostPort.parseHost("::ffff:10.0.0.1") == "::ffff:10.0.0.1")
        #expect(try HostPort.parseHost("fe80::1%eth0") == "fe80::1%eth0")
        #expect(try HostPort.parseHost("[fe80::1%2]") == "fe80::1%2")
        let longest = ([String](repeating: String(repeating: "a", count: 63), count: 3)
            + [String(repeating: "b", count: 61)]).joined(separator: ".")
        #expect(longest.utf8.count == 253)
        #expect(try HostPort.parseHost(longest) == longest)
    }

    static let badHosts: [(input: String, mentions: String)] = [
        ("", "empty host"),
        ("[::1", "malformed host '[::1': missing ']'"),
        ("::1]", "'::1]'"),
        ("[]", "'[]'"),
        ("[1.2.3.4]", "'[1.2.3.4]'"),
        ("[example.com]", "'[example.com]'"),
        ("example.com:80", "'example.com:80'"),
        ("1.2.3.4:80", "'1.2.3.4:80'"),
        (":::1", "':::1'"),
        ("2001:db8::g", "'2001:db8::g'"),
        ("fe80::1%", "'fe80::1%'"),
        ("::1\u{0}x", "'::1?x'"),
        ("300.1.1.1", "'300.1.1.1'"),
        ("1.2.3", "'1.2.3'"),
        ("01.2.3.4", "'01.2.3.4'"),
        ("a..b", "'a..b'"),
        (".example", "'.example'"),
        (".", "'.'"),
        ("-a.example", "'-a.example'"),
        ("a-.example", "'a-.example'"),
        ("ex ample.com", "'ex ample.com'"),
        ("bücher.de", "punycode"),
        ("exa/mple", "'exa/mple'"),
        (String(repeating: "a", count: 64) + ".com", "longer than 63"),
        (([String](repeating: String(repeating: "a", count: 63), count: 4)).joined(separator: "."), "longer than 253"),
        (String(repeating: "a", count: 2000), "argument too long"),
    ]

    @Test(arguments: badHosts)
    func rejectsBadHost(_ bad: (input: String, mentions: String)) {
        let message = usageMessage { () throws(PortwatchError) in _ = try HostPort.parseHost(bad.input) }
        #expect(message.contains(bad.mentions), "\(message)")
    }

    @Test func targets() throws {
        func target(_ text: String, proto: TransportProtocol? = nil) throws -> String {
            let t = try HostPort.parseTarget(text, services: services, proto: proto)
            return HostPort(host: t.host, port: t.port).description
        }
        #expect(try target("example.com:443") == "example.com:443")
        #expect(try target("1.2.3.4:80") == "1.2.3.4:80")
        #expect(try target("[::1]:80") == "[::1]:80")
        #expect(try target("[2001:db8:0::1]:8080") == "[2001:db8::1]:8080")
        #expect(try target("localhost:ssh") == "localhost:22")
        #expect(try target("localhost:HTTP") == "localhost:80")
        #expect(try target("ns1:domain") == "ns1:53")
        // A UDP-only service resolves even without asking for UDP.
        #expect(try target("pool.ntp.org:ntp") == "pool.ntp.org:123")
        #expect(try target("h:https", proto: .udp) == "h:443")
        let parsed = try HostPort.parseTarget("Example.com:65535", services: services)
        #expect(parsed.host == "example.com")
        #expect(parsed.port == 65535)
        #expect(HostPort(host: "example.com").description == "example.com")
    }

    static let badTargets: [(input: String, mentions: String)] = [
        ("", "empty target"),
        ("example.com", "missing port in target 'example.com'"),
        ("example.com:", "'example.com:'"),
        (":80", "missing host in target ':80'"),
        ("::1:80", "ambiguous target '::1:80'"),
        ("2001:db8::1:443", "[2001:db8::1]:443"),
        ("::1", "ambiguous target '::1'"),
        ("[::1", "malformed target '[::1': missing ']'"),
        ("[::1]", "missing port in target '[::1]'"),
        ("[::1]80", "'[::1]80'"),
        ("[::1]:", "'[::1]:'"),
        ("[nothost]:80", "'[nothost]'"),
        ("host:0", "'host:0'"),
        ("host:65536", "'65536'"),
        ("host:-1", "'-1'"),
        ("host:80x", "'80x'"),
        ("host:nope", "unknown service 'nope'"),
        ("host:ntp/udp", "'ntp/udp'"),
        ("bad host:80", "'bad host'"),
        ("300.1.1.1:80", "'300.1.1.1'"),
        (String(repeating: "a", count: 2000) + ":80", "argument too long"),
    ]

    @Test(arguments: badTargets)
    func rejectsBadTarget(_ bad: (input: String, mentions: String)) {
        let message = usageMessage { () throws(PortwatchError) in _ = try HostPort.parseTarget(bad.input, services: services) }
        #expect(message.contains(bad.mentions), "\(message)")
    }

    @Test func serviceForRequestedProtocolOnly() {
        let message = usageMessage { () throws(PortwatchError) in
            _ = try HostPort.parseTarget("h:ntp", services: services, proto: .tcp)
        }
        #expect(message.contains("unknown service 'ntp'"))
    }
}

// MARK: - No input traps

/// Feeds every parser many strings built from the characters that matter to them; any trap
/// (overflow, bad index) would crash the test process, and every failure must be a usage error.
@Test func parsersNeverTrapOnArbitraryInput() {
    let alphabet = Array("0123456789-,/:.[]%ab sSmMhdkKiIBtTcpudµ\u{0}\n٣")
    var state: UInt64 = 0x9E37_79B9_7F4A_7C15
    func next() -> Int {
        // xorshift64*: deterministic, so a failure reproduces.
        state ^= state >> 12
        state ^= state << 25
        state ^= state >> 27
        return Int(truncatingIfNeeded: (state &* 0x2545_F491_4F6C_DD1D) >> 33)
    }
    for _ in 0..<20_000 {
        let length = next() % 24
        let text = String((0..<length).map { _ in alphabet[next() % alphabet.count] })
        onlyUsageErrors { () throws(PortwatchError) in _ = try PortSpec(parsing: text, services: services) }
        onlyUsageErrors { () throws(PortwatchError) in _ = try parseDuration(text) }
        onlyUsageErrors { () throws(PortwatchError) in _ = try parseSize(text) }
        onlyUsageErrors { () throws(PortwatchError) in _ = try HostPort.parseHost(text) }
        onlyUsageErrors { () throws(PortwatchError) in _ = try HostPort.parseTarget(text, services: services) }
    }
}

/// Runs a parse that may fail, but only with a one-line usage error.
private func onlyUsageErrors(_ parse: () throws(PortwatchError) -> Void) {
    do {
        try parse()
    } catch {
        #expect(error.kind == .usage)
        #expect(!error.message.contains("\n"), "\(error.message)")
    }
}

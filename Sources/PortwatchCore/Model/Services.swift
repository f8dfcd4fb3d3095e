/// Service names and their ports, in the format of `/etc/services`
/// (`name port/proto [aliases...] # comment`).
///
/// Only TCP and UDP entries are kept (the file also lists `ddp` and `sctp`, which portwatch does not
/// watch). Both directions of lookup are dictionaries, so a lookup costs O(1) however large the file.
public struct ServiceDatabase: Sendable {
    /// One `port/proto` a name stands for.
    private struct Entry: Sendable, Hashable {
        var port: UInt16
        var proto: TransportProtocol
    }

    /// (port, proto) → the first name listed for it; the first wins, as with getservbyport(3).
    private var names: [Entry: String] = [:]
    /// Lowercased name or alias → its entries, in file order, without duplicates.
    private var entries: [String: [Entry]] = [:]

    /// The machine's database: `/etc/services`, read once on first use, or a built-in table of
    /// common services when the file is absent or lists nothing (minimal containers ship without it).
    public static let system: ServiceDatabase = {
        if let text = readFileString("/etc/services") {
            let database = ServiceDatabase(parsing: text)
            if !database.isEmpty { return database }
        }
        return builtIn
    }()

    /// The fallback table used when `/etc/services` is missing, with the names `/etc/services` uses.
    public static let builtIn = ServiceDatabase(parsing: builtInTable)

    /// Parses text in `/etc/services` format; malformed lines are skipped, as libc does.
    public init(parsing text: String) {
        for line in text.split(whereSeparator: { $0 == "\n" || $0 == "\r\n" || $0 == "\r" }) {
            // Everything after '#' is a comment, including on lines that carry an entry.
            let content = line.firstIndex(of: "#").map { line[..<$0] } ?? line[...]
            let fields = content.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard fields.count >= 2, let entry = Self.parseEntry(fields[1]) else { continue }
            let name = String(fields[0])
            if names[entry] == nil { names[entry] = name }
            for alias in fields.dropFirst(2) {
                add(String(alias), entry)
            }
            add(name, entry)
        }
    }

    /// True when the database knows no service at all.
    public var isEmpty: Bool { names.isEmpty }

    /// The first name listed for a port and protocol (`22`/tcp → `ssh`), or nil.
    public func name(port: UInt16, proto: TransportProtocol) -> String? {
        names[Entry(port: port, proto: proto)]
    }

    /// The ports a name or alias stands for (case-insensitive), for one protocol or, when nil, both.
    public func ports(named name: String, proto: TransportProtocol?) -> [(UInt16, TransportProtocol)] {
        guard let found = entries[name.lowercased()] else { return [] }
        return found.filter { proto == nil || $0.proto == proto }.map { ($0.port, $0.proto) }
    }

    /// Every port with a name for one protocol, ascending (scan's default port list draws on it).
    public func namedPorts(proto: TransportProtocol) -> [UInt16] {
        names.keys.filter { $0.proto == proto }.map(\.port).sorted()
    }

    private mutating func add(_ name: String, _ entry: Entry) {
        let key = name.lowercased()
        var list = entries[key, default: []]
        // Lists stay tiny (a name has one or two entries), so a linear duplicate check is cheap.
        if !list.contains(entry) { list.append(entry) }
        entries[key] = list
    }

    /// Parses `22/tcp`; nil for other protocols or a bad number.
    private static func parseEntry(_ field: Substring) -> Entry? {
        let parts = field.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let port = UInt16(parts[0]),
              let proto = TransportProtocol(rawValue: parts[1].lowercased())
        else { return nil }
        return Entry(port: port, proto: proto)
    }

    /// Common services with their `/etc/services` (IANA) names, for systems without the file.
    private static let builtInTable = """
        ftp-data        20/tcp
        ftp             21/tcp
        ssh             22/tcp
        telnet          23/tcp
        smtp            25/tcp          mail
        domain          53/tcp
        domain          53/udp
        bootps          67/udp
        bootpc          68/udp
        tftp            69/udp
        http            80/tcp          www
        kerberos        88/tcp          kerberos5 krb5 kerberos-sec
        kerberos        88/udp          kerberos5 krb5 kerberos-sec
        pop3            110/tcp         pop-3
        sunrpc          111/tcp         portmapper
        sunrpc          111/udp         portmapper
        ntp             123/udp
        netbios-ns      137/udp
        imap2           143/tcp         imap
        snmp            161/tcp
        snmp            161/udp
        snmp-trap       162/udp         snmptrap
        ldap            389/tcp
        https           443/tcp
        https           443/udp
        microsoft-ds    445/tcp
        submissions     465/tcp         ssmtp smtps
        syslog          514/udp
        submission      587/tcp
        ldaps           636/tcp
        domain-s        853/tcp
        domain-s        853/udp
        rsync           873/tcp
        imaps           993/tcp
        pop3s           995/tcp
        openvpn         1194/tcp
        openvpn         1194/udp
        ms-sql-s        1433/tcp
        mqtt            1883/tcp
        nfs             2049/tcp
        nfs             2049/udp
        mysql           3306/tcp
        ms-wbt-server   3389/tcp
        postgresql      5432/tcp        postgres
        amqp            5672/tcp
        x11             6000/tcp        x11-0
        redis           6379/tcp
        http-alt        8080/tcp        webcache
        memcached       11211/tcp
        memcached       11211/udp
        mongodb         27017/tcp
        """
}

import ArgumentParser
import PortwatchCore
#if canImport(Glibc)
import Glibc
#endif

/// `portwatch scan`: which ports of which hosts are open, closed or filtered.
struct Scan: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Scan hosts or CIDR blocks: open, closed, filtered or open|filtered per port.",
        discussion: """
            TCP is a connect scan (no root needed); --udp sends a datagram (a DNS, NTP or SNMP \
            request where the port needs one) and reads ICMP errors: port-unreachable is closed, \
            admin-prohibited filtered, a reply open, silence after retries open|filtered. \
            Off this host the defaults are polite (\(ScanOptions.politeConcurrency) probes in flight, \
            \(Int(ScanOptions.politeRate)) per second); loopback and this host's own addresses are scanned \
            as fast as the kernel answers. Exit 0 when some port is open, 1 when the scan completed \
            and none is, 2 for bad input, 130 when stopped with Ctrl-C (what was found so far is printed).
            """)

    @Argument(help: "Hosts, IPv4/IPv6 addresses or CIDR blocks (10.0.0.0/29, fd00::/120); at most 65,536 addresses.")
    var targets: [String] = []

    @Option(name: [.customShort("p"), .customLong("ports")],
            help: "Ports: 1-1024, 22,80,443, ssh. Default: 1-1024 and every port named in /etc/services.")
    var ports: String?

    @Option(name: .long, help: "The N most frequently open ports (nmap's frequency table when installed).")
    var top: Int?

    @Flag(name: .long, help: "Scan UDP instead of TCP.")
    var udp = false

    @Option(name: .long, help: "Longest wait for one probe's answer (default 1s); shorter once the host's round trip is known.",
            transform: { try parsePositiveSeconds($0) })
    var timeout: Double = 1

    @Option(name: .long, help: "Probes started per second at most (default \(Int(ScanOptions.politeRate)) off this host, no limit on it).")
    var rate: Double?

    @Option(name: .long, help: "Probes in flight at most (default \(ScanOptions.politeConcurrency) off this host, \(ScanOptions.localConcurrency) on it).")
    var concurrency: Int?

    @Flag(name: .long, help: "Read what open TCP ports say first (SSH, SMTP, FTP greetings).")
    var banners = false

    @Flag(name: .long, help: "List open ports only.")
    var open = false

    @Flag(name: .long, help: "List closed ports too.")
    var showClosed = false

    @OptionGroup var output: OutputOptions

    func validate() throws {
        if let top, top < 1 || top > 65535 { throw PortwatchError.usage("--top must be 1-65535") }
        if ports != nil && top != nil { throw PortwatchError.usage("-p and --top both choose the ports: give one") }
        if let rate, !(rate > 0) || !rate.isFinite { throw PortwatchError.usage("--rate must be more than 0 probes per second") }
        if let concurrency, concurrency < 1 || concurrency > 65536 { throw PortwatchError.usage("--concurrency must be 1-65536") }
        if open && showClosed { throw PortwatchError.usage("--open and --show-closed contradict each other: give one") }
        if banners && udp { throw PortwatchError.usage("--banners reads TCP greetings; it does not combine with --udp") }
    }

    func run() throws {
        let proto: TransportProtocol = udp ? .udp : .tcp
        let portList = try chosenPorts(proto)
        let hosts = try scanTargets(targets)
        var options = ScanOptions()
        options.udp = udp
        options.maxTimeout = timeout
        options.banners = banners
        let local = allTargetsLocal(hosts)
        options.rate = rate ?? (local ? nil : ScanOptions.politeRate)
        let wanted = concurrency ?? (local ? ScanOptions.localConcurrency : ScanOptions.politeConcurrency)
        // Each probe in flight holds a descriptor; leave room for the rest of the process.
        options.concurrency = max(1, min(wanted, openFileLimit() - 64))
        options.cancelFD = interruptDescriptor()

        let bar = !output.json && isatty(STDERR_FILENO) == 1 ? ProgressBar() : nil
        let report = try runScan(targets: hosts, ports: portList, options: options,
                                 progress: bar.map { b in { b.draw($0) } })
        bar?.clear()
        let listing: ScanListing = open ? .open : (showClosed ? .all : .notClosed)
        if output.json {
            output.print { $0.scanReport(report, listing: listing) }
        } else {
            emit(render(report, listing: listing, proto: proto))
        }
        if !report.complete {
            printError("interrupted: \(report.hosts.reduce(0) { $0 + $1.counts.total }) ports decided before Ctrl-C")
            throw ExitCode(130)
        }
        if !report.anyOpen { throw AnswerNo() }
    }

    private func chosenPorts(_ proto: TransportProtocol) throws -> [UInt16] {
        if let top { return ScanPorts.topPorts(top, proto: proto).ports }
        guard let ports else { return ScanPorts.defaultPorts(proto: proto) }
        let spec = try parsePorts(ports).restricted(to: [proto])
        let list = spec.ports(for: proto)
        if list.isEmpty { throw PortwatchError.usage("no \(proto.rawValue) ports in '\(ports)'") }
        return list
    }

    private func render(_ report: ScanReport, listing: ScanListing, proto: TransportProtocol) -> String {
        let term = Terminal.stdout
        var out: [String] = []
        for host in report.hosts {
            let c = host.counts
            var summary = "\(host.host)"
            if host.host != host.address.description { summary += " (\(host.address))" }
            summary += ": \(c.total) \(proto.rawValue) port\(c.total == 1 ? "" : "s") in \(String(format1: host.seconds)) s — "
            var parts = ["\(c.open) open"]
            if c.closed > 0 { parts.append("\(c.closed) closed") }
            if c.filtered > 0 { parts.append("\(c.filtered) filtered") }
            if c.openFiltered > 0 { parts.append("\(c.openFiltered) open|filtered") }
            summary += parts.joined(separator: ", ")
            if host.icmpRateLimited { summary += " (the host rate-limits ICMP errors; the scan slowed down to match)" }
            out.append(term.bold(summary))
            let rows = listing.rows(host)
            if rows.isEmpty { continue }
            var table = Table([.init(title: "PORT"), .init(title: "STATE"), .init(title: "SERVICE"),
                               .init(title: "RTT", align: .right), .init(title: "REASON"),
                               .init(title: "BANNER", flexible: true)])
            for p in rows {
                let paint: (String) -> String = switch p.state {
                case .open: term.green
                case .closed: term.red
                default: term.yellow
                }
                table.add([Table.Cell(text: "\(p.port)/\(p.proto.rawValue)"), Table.Cell(text: p.state.rawValue, paint: paint),
                           Table.Cell(text: p.service ?? "-"),
                           Table.Cell(text: p.rtt.map { formatRTT(micros: UInt32(min($0 * 1e6, 4e9))) } ?? "-"),
                           Table.Cell(text: p.reason), Table.Cell(text: p.banner ?? "")])
            }
            out.append(table.render(term))
        }
        return out.joined(separator: "\n")
    }
}

/// A one-line progress bar with an ETA on stderr, redrawn in place.
final class ProgressBar {
    private var lastWidth = 0

    func draw(_ p: ScanProgress) {
        let width = 30
        let fraction = p.total > 0 ? Double(p.done) / Double(p.total) : 0
        let filled = Int(fraction * Double(width))
        var line = "[" + String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled) + "] "
        line += "\(Int(fraction * 100))% \(p.done)/\(p.total) ports, \(p.open) open"
        if let eta = p.eta { line += ", ETA \(formatETA(eta))" }
        writeAll(STDERR_FILENO, "\r" + line + String(repeating: " ", count: max(0, lastWidth - line.count)))
        lastWidth = line.count
    }

    func clear() {
        if lastWidth > 0 { writeAll(STDERR_FILENO, "\r" + String(repeating: " ", count: lastWidth) + "\r") }
    }

    private func formatETA(_ seconds: Double) -> String {
        let s = Int(seconds.rounded(.up))
        return s >= 60 ? "\(s / 60)m\(s % 60)s" : "\(s)s"
    }
}

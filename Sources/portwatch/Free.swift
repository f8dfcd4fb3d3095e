import ArgumentParser
import PortwatchCore
#if canImport(Glibc)
import Glibc
#endif

/// `portwatch free`: ports nothing holds, verified by binding.
struct Free: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print free ports, each verified by binding it on the IPv4 and IPv6 wildcards.")

    @Option(name: .long, help: "Where to look, A-B (default 1024-65535 outside the ephemeral range first).")
    var range: String?

    @Option(name: .long, help: "How many ports (default 1).")
    var count: Int = 1

    @Flag(name: .long, help: "UDP ports instead of TCP.")
    var udp = false

    @OptionGroup var output: OutputOptions

    func validate() throws {
        if count < 1 || count > 65535 { throw PortwatchError.usage("invalid --count \(count): must be 1-65535") }
    }

    func run() throws {
        let proto: TransportProtocol = udp ? .udp : .tcp
        var candidates: [UInt16]
        if let range {
            let spec = try PortSpec(parsing: range)
            guard spec.items.allSatisfy({ $0.proto == nil }) else {
                throw PortwatchError.usage("invalid --range '\(range)': no /tcp or /udp here (use --udp)")
            }
            candidates = spec.ports(for: proto)
        } else {
            // Stay out of the ephemeral range, where the kernel picks client ports.
            let eph = EphemeralRange.system().range
            candidates = (UInt16(1024)...UInt16(65535)).filter { !eph.contains($0) }
            if candidates.isEmpty { candidates = Array(UInt16(1024)...UInt16(65535)) }
        }
        // Start at a random place so parallel callers do not race for the same port.
        var rng = SystemRandomNumberGenerator()
        let start = candidates.isEmpty ? 0 : Int.random(in: 0..<candidates.count, using: &rng)
        var found: [UInt16] = []
        var denied: [UInt16] = []
        for i in 0..<candidates.count where found.count < count {
            let port = candidates[(start + i) % candidates.count]
            switch tryBind(port: port, proto: proto) {
            case .free: found.append(port)
            case .denied: denied.append(port)
            case .taken: break
            }
        }
        if found.count < count && !denied.isEmpty {
            // Not a "no": the ports could not be tried at all.
            let floor = unprivilegedPortStart().map { " (net.ipv4.ip_unprivileged_port_start = \($0))" } ?? ""
            throw PortwatchError.permission("binding \(denied.count) of the \(candidates.count) ports was denied: ports below the unprivileged start\(floor) need root or CAP_NET_BIND_SERVICE")
        }
        if output.json {
            output.print { w in
                w.beginObject()
                w.field("protocol", proto.rawValue)
                w.array("ports") { w in for p in found { w.int(p) } }
                w.field("requested", count)
                w.endObject()
            }
        } else if !found.isEmpty {
            emit(found.map(String.init).joined(separator: "\n"))
        }
        if found.count < count {
            if !output.json { printError("only \(found.count) of \(count) free \(proto.rawValue) ports found") }
            throw AnswerNo()
        }
    }
}

import ArgumentParser
import PortwatchCore
#if canImport(Glibc)
import Glibc
#endif

/// `portwatch kill`: signal the processes listening on ports.
struct Kill: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Signal the processes listening on the ports (asks first unless --yes).")

    @Argument(help: "Ports: 8080, 8000-8100, 22,80,443, ssh, 53/udp.")
    var ports: String

    @Option(name: .long, help: "Any signal kill -l lists, by name (with or without SIG) or number (default TERM).")
    var signal: SignalName = .term

    @Flag(name: .long, help: "Do not ask.")
    var yes = false

    @OptionGroup var output: OutputOptions

    @OptionGroup var namespaces: NamespaceOptions

    func run() throws {
        let spec = try parsePorts(ports)
        let (signo, signame) = (signal.number, signal.name)
        let protos = spec.protocols(default: [.tcp, .udp])
        var query = SocketQuery(protocols: protos, withCounters: false)
        query.ports = portFilters(spec, protocols: protos)
        query.listenersOnly = true
        let options = SnapshotOptions(query: query, processes: .ownersThorough, socketSource: .fromEnvironment)
        // With --netns/--all-namespaces, the listeners of each namespace (pids are global).
        let inNamespaces = try namespaces.targets()
        var snapshots: [(NetworkNamespace?, PortSnapshot)] = []
        if let inNamespaces {
            for (ns, source) in inNamespaces.list { snapshots.append((ns, try PortSnapshot.take(options, source: source))) }
        } else {
            snapshots.append((nil, try PortSnapshot.take(options)))
        }
        guard var snapshot = snapshots.first?.1 else { throw PortwatchError.system("no network namespace could be read") }
        snapshot.ports = snapshots.flatMap(\.1.ports)
        snapshot.notes = (inNamespaces?.notes ?? []) + snapshots.flatMap(\.1.notes)
        snapshot.ownerProblem = snapshots.lazy.compactMap(\.1.ownerProblem).first
        var targets: [Int32: (ProcessRecord, [String])] = [:]
        for (ns, part) in snapshots {
            for row in part.ports where row.listening && spec.contains(port: row.port, proto: row.proto) {
                let held = (ns.map { "\($0.label) " } ?? "") + "\(row.proto.rawValue)/\(row.port)"
                for p in row.processes { targets[p.pid, default: (p, [])].1.append(held) }
            }
        }
        let ordered = targets.keys.sorted().compactMap { targets[$0] }
        if ordered.isEmpty {
            // Listeners whose holders the kernel would not show us: exit 2 with the reason.
            let held = snapshot.ports.contains { $0.listening && spec.contains(port: $0.port, proto: $0.proto) }
            if held, !output.json, let problem = snapshot.ownerProblem { throw problem }
            if output.json {
                output.print { w in
                    w.beginObject()
                    w.field("signal", signame)
                    w.array("signalled") { _ in }
                    w.notes(snapshot.notes)
                    w.endObject()
                }
            } else {
                emit("nothing listens on \(ports) that this user can see")
                for note in snapshot.notes { printError("note: \(note)") }
            }
            if held, let problem = snapshot.ownerProblem { throw problem }
            throw AnswerNo()
        }
        if !yes {
            guard isatty(STDIN_FILENO) == 1 else {
                throw PortwatchError.usage("refusing to send SIG\(signame) without confirmation: stdin is not a terminal (pass --yes)")
            }
            for (p, held) in ordered {
                writeAll(STDERR_FILENO, "\(p.name)[\(p.pid)] (\(p.user ?? "?")) holds \(held.joined(separator: ", ")): \(p.command)\n")
            }
            writeAll(STDERR_FILENO, "send SIG\(signame) to \(ordered.count) process\(ordered.count == 1 ? "" : "es")? [y/N] ")
            let answer = readLine()?.lowercased() ?? ""
            guard answer == "y" || answer == "yes" else {
                emit("nothing signalled")
                throw AnswerNo()
            }
        }
        var done: [(ProcessRecord, [String])] = []
        var failures: [String] = []
        for (p, held) in ordered {
            do {
                try sendSignal(signo, to: p.pid)
                done.append((p, held))
                if !output.json { emit("sent SIG\(signame) to \(p.name)[\(p.pid)] (\(held.joined(separator: ", ")))") }
            } catch {
                failures.append("\(p.name)[\(p.pid)]: \(error.description)")
            }
        }
        if output.json {
            output.print { w in
                w.beginObject()
                w.field("signal", signame)
                w.array("signalled") { w in for (p, held) in done { w.signalled(p, ports: held) } }
                w.strings("failed", failures)
                w.notes(snapshot.notes)
                w.endObject()
            }
        }
        if !failures.isEmpty { throw PortwatchError.permission("could not signal " + failures.joined(separator: "; ")) }
    }
}

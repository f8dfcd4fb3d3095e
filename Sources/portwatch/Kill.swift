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

    @Option(name: .long, help: "TERM (default), KILL, HUP, INT, QUIT, USR1, USR2, or a number.")
    var signal: String = "TERM"

    @Flag(name: .long, help: "Do not ask.")
    var yes = false

    @OptionGroup var output: OutputOptions

    func run() throws {
        let spec = try parsePorts(ports)
        let (signo, signame) = try parseSignal(signal)
        let protos = spec.protocols(default: [.tcp, .udp])
        var query = SocketQuery(protocols: protos, withCounters: false)
        query.ports = portFilters(spec, protocols: protos)
        query.listenersOnly = true
        let snapshot = try PortSnapshot.take(SnapshotOptions(query: query, processes: .ownersThorough, socketSource: .fromEnvironment))
        var targets: [Int32: (ProcessRecord, [String])] = [:]
        for row in snapshot.ports where row.listening && spec.contains(port: row.port, proto: row.proto) {
            for p in row.processes { targets[p.pid, default: (p, [])].1.append("\(row.proto.rawValue)/\(row.port)") }
        }
        let ordered = targets.keys.sorted().compactMap { targets[$0] }
        if ordered.isEmpty {
            // Listeners whose holders the kernel would not show us: exit 2 with the reason.
            let held = snapshot.ports.contains { $0.listening && spec.contains(port: $0.port, proto: $0.proto) }
            if held, !output.json, let problem = snapshot.ownerProblem { throw problem }
            if output.json {
                output.print(["signal": .string(signame), "signalled": [], "notes": .array(snapshot.notes.map { .string($0) })])
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
        var done: [JSONValue] = []
        var failures: [String] = []
        for (p, held) in ordered {
            do {
                try sendSignal(signo, to: p.pid)
                done.append(["pid": .number(p.pid), "name": .string(p.name), "ports": .array(held.map { .string($0) })])
                if !output.json { emit("sent SIG\(signame) to \(p.name)[\(p.pid)] (\(held.joined(separator: ", ")))") }
            } catch {
                failures.append("\(p.name)[\(p.pid)]: \(error.description)")
            }
        }
        if output.json {
            output.print(["signal": .string(signame), "signalled": .array(done),
                          "failed": .array(failures.map { .string($0) })])
        }
        if !failures.isEmpty { throw PortwatchError.permission("could not signal " + failures.joined(separator: "; ")) }
    }
}

import ArgumentParser
import PortwatchCore

/// `portwatch who`: the processes holding ports.
struct Who: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Which processes hold the port: pid, name, command, user, unit or container, sockets.")

    @Argument(help: "Ports: 8080, 8000-8100, 22,80,443, ssh, 53/udp.")
    var ports: String

    @OptionGroup var output: OutputOptions

    func run() throws {
        let spec = try parsePorts(ports)
        let protos = spec.protocols(default: [.tcp, .udp])
        var query = SocketQuery(protocols: protos, withCounters: false)
        query.ports = portFilters(spec, protocols: protos)
        // Listeners hold a port; without one, whoever holds connections on it. For one port,
        // ask for listeners first: a busy server's tens of thousands of connections need not be
        // dumped to name it.
        var snapshot: PortSnapshot
        if spec.isSinglePort {
            var listeners = query
            listeners.listenersOnly = true
            snapshot = try PortSnapshot.take(SnapshotOptions(query: listeners, processes: .ownersThorough, socketSource: .fromEnvironment))
            if !snapshot.ports.contains(where: { $0.listening }) {
                snapshot = try PortSnapshot.take(SnapshotOptions(query: query, processes: .ownersThorough, socketSource: .fromEnvironment))
            }
        } else {
            snapshot = try PortSnapshot.take(SnapshotOptions(query: query, processes: .ownersThorough, socketSource: .fromEnvironment))
        }
        let rows = snapshot.ports.filter { $0.role == .local && spec.contains(port: $0.port, proto: $0.proto) }

        var results: [JSONValue] = []
        var table = Table([.init(title: "PROTO"), .init(title: "PORT", align: .right), .init(title: "PID", align: .right),
                           .init(title: "USER"), .init(title: "NAME"), .init(title: "UNIT/CONTAINER"),
                           .init(title: "SOCKETS"), .init(title: "COMMAND", flexible: true)])
        var found = 0
        for row in rows {
            let sockets = row.listening
                ? row.listeners.map { ($0.inode, "\(row.proto.rawValue) \($0.local.listenText(v6only: $0.v6only)) \(row.proto == .udp ? "bound" : "listen")") }
                : snapshot.sockets.filter { $0.proto == row.proto && $0.local.port == row.port && $0.inode != 0 }
                    .map { ($0.inode, "\($0.proto.rawValue) \($0.local) -> \($0.peer) \($0.state.name)") }
            var procs: [JSONValue] = []
            for process in row.processes {
                let held = sockets.filter { (snapshot.owners[$0.0] ?? []).contains(process.pid) }.map(\.1)
                var json = process.json
                if case .object(var pairs) = json {
                    pairs.append(("sockets", .array(held.map { .string($0) })))
                    json = .object(pairs)
                }
                procs.append(json)
                found += 1
                let where_ = process.container.map { "container " + String($0.prefix(12)) } ?? process.unit ?? "-"
                table.add([row.proto.rawValue, String(row.port), String(process.pid), process.user ?? "?", process.name,
                           where_, held.count == 1 ? held[0] : "\(held.count) sockets", process.command])
            }
            var entry: [(String, JSONValue)] = [("port", .number(row.port)), ("protocol", .string(row.proto.rawValue)),
                                                ("processes", .array(procs))]
            if row.processes.isEmpty {
                entry.append(("unattributed_sockets", .array(sockets.map { .string($0.1) })))
            }
            results.append(.object(entry))
        }
        // Sockets whose holders the kernel would not show us: the question has no answer (exit 2,
        // the reason on stderr), not a "nothing".
        if found == 0, !rows.isEmpty, !output.json, let problem = snapshot.ownerProblem { throw problem }
        if output.json {
            if results.count == 1 {
                var doc = results[0]
                if case .object(var pairs) = doc { pairs.append(("notes", .array(snapshot.notes.map { .string($0) }))); doc = .object(pairs) }
                output.print(doc)
            } else if results.isEmpty && spec.isSinglePort {
                let proto = protos.count == 1 ? (protos.first?.rawValue ?? "tcp") : "tcp"
                output.print(["port": .number(spec.ports(for: protos.first ?? .tcp).first ?? 0), "protocol": .string(proto),
                              "processes": [], "notes": .array(snapshot.notes.map { .string($0) })])
            } else {
                output.print(["results": .array(results), "notes": .array(snapshot.notes.map { .string($0) })])
            }
        } else {
            if found > 0 {
                emit(table.render(Terminal.stdout))
            } else if rows.isEmpty {
                emit("nothing holds \(ports)")
            } else {
                emit("sockets on \(ports) exist but their processes could not be seen")
            }
            for note in snapshot.notes { printError("note: \(note)") }
        }
        if found == 0, !rows.isEmpty, let problem = snapshot.ownerProblem { throw problem }
        if found == 0 { throw AnswerNo() }
    }
}

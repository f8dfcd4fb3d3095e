import ArgumentParser
import PortwatchCore

/// `portwatch who`: the processes holding ports.
struct Who: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Which processes hold the port — listening, bound or connected: pid, name, command, user, unit or container, sockets.")

    @Argument(help: "Ports: 8080, 8000-8100, 22,80,443, ssh, 53/udp.")
    var ports: String

    @OptionGroup var output: OutputOptions

    func run() throws {
        let spec = try parsePorts(ports)
        let protos = spec.protocols(default: [.tcp, .udp])
        let report = try findHolders(spec, protocols: protos)

        var results: [JSONValue] = []
        var table = Table([.init(title: "PROTO"), .init(title: "PORT", align: .right), .init(title: "PID", align: .right),
                           .init(title: "USER"), .init(title: "NAME"), .init(title: "UNIT/CONTAINER"),
                           .init(title: "HOLDS"), .init(title: "SOCKETS"), .init(title: "COMMAND", flexible: true)])
        var found = 0
        for row in report.ports {
            var procs: [JSONValue] = []
            for process in row.processes {
                let held = row.sockets(heldBy: process.pid)
                let kinds = HoldKind.allCases.filter { k in held.contains { $0.kind == k } }.map(\.rawValue)
                var json = process.json
                if case .object(var pairs) = json {
                    pairs.append(("holds", .array(kinds.map { .string($0) })))
                    pairs.append(("sockets", .array(held.map { .string($0.description) })))
                    json = .object(pairs)
                }
                procs.append(json)
                found += 1
                let where_ = process.container.map { "container " + String($0.prefix(12)) } ?? process.unit ?? "-"
                table.add([row.proto.rawValue, String(row.port), String(process.pid), process.user ?? "?", process.name,
                           where_, kinds.joined(separator: ","),
                           held.count == 1 ? held[0].description : "\(held.count) sockets", process.command])
            }
            var entry: [(String, JSONValue)] = [("port", .number(row.port)), ("protocol", .string(row.proto.rawValue)),
                                                ("processes", .array(procs))]
            let unattributed = row.unattributed
            if !unattributed.isEmpty {
                entry.append(("unattributed_sockets", .array(unattributed.map { .string($0.description) })))
            }
            results.append(.object(entry))
        }
        let notes = JSONValue.array(report.notes.map { .string($0) })
        if output.json {
            if results.count == 1 {
                var doc = results[0]
                if case .object(var pairs) = doc { pairs.append(("notes", notes)); doc = .object(pairs) }
                output.print(doc)
            } else if results.isEmpty && spec.isSinglePort {
                let proto = protos.count == 1 ? (protos.first?.rawValue ?? "tcp") : "tcp"
                output.print(["port": .number(spec.ports(for: protos.first ?? .tcp).first ?? 0), "protocol": .string(proto),
                              "processes": [], "notes": notes])
            } else {
                output.print(["results": .array(results), "notes": notes])
            }
        } else {
            if found > 0 {
                emit(table.render(Terminal.stdout))
            } else if report.ports.isEmpty {
                emit("nothing holds \(ports)")
            } else {
                emit("sockets on \(ports) exist but their processes could not be seen")
            }
            for note in report.notes { printError("note: \(note)") }
        }
        if found == 0 { throw AnswerNo() }
    }
}

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
        let report = try findHolders(spec, protocols: protos, source: defaultSocketSource(.fromEnvironment))

        var table = Table([.init(title: "PROTO"), .init(title: "PORT", align: .right), .init(title: "PID", align: .right),
                           .init(title: "USER"), .init(title: "NAME"), .init(title: "UNIT/CONTAINER"),
                           .init(title: "HOLDS"), .init(title: "SOCKETS"), .init(title: "COMMAND", flexible: true)])
        var found = 0
        for row in report.ports {
            for process in row.processes {
                let held = row.sockets(heldBy: process.pid)
                let kinds = HoldKind.allCases.filter { k in held.contains { $0.kind == k } }.map(\.rawValue)
                found += 1
                let where_ = process.container.map { "container " + String($0.prefix(12)) } ?? process.unit ?? "-"
                table.add([row.proto.rawValue, String(row.port), String(process.pid), process.user ?? "?", process.name,
                           where_, kinds.joined(separator: ","),
                           held.count == 1 ? held[0].description : "\(held.count) sockets", process.command])
            }
        }
        // Sockets whose holders the kernel would not show us: the question has no answer (exit 2,
        // the reason on stderr), not a "nothing".
        if found == 0, !report.ports.isEmpty, !output.json, let problem = report.ownerProblem { throw problem }
        if output.json {
            output.print { w in
                if report.ports.count == 1 {
                    w.whoEntry(report.ports[0]) { w in w.notes(report.notes) }
                } else if report.ports.isEmpty && spec.isSinglePort {
                    let proto = protos.count == 1 ? (protos.first ?? .tcp) : .tcp
                    w.whoEntry(PortHolders(proto: proto, port: spec.ports(for: protos.first ?? .tcp).first ?? 0)) { w in
                        w.notes(report.notes)
                    }
                } else {
                    w.beginObject()
                    w.array("results") { w in
                        for row in report.ports { w.whoEntry(row) }
                    }
                    w.notes(report.notes)
                    w.endObject()
                }
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
        if found == 0, !report.ports.isEmpty, let problem = report.ownerProblem { throw problem }
        if found == 0 { throw AnswerNo() }
    }
}

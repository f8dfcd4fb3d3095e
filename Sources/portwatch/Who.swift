import ArgumentParser
import PortwatchCore

/// `portwatch who`: the processes holding ports.
struct Who: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Which processes hold the port — listening, bound or connected: pid, name, command, user, unit or container, sockets.")

    @Argument(help: "Ports: 8080, 8000-8100, 22,80,443, ssh, 53/udp.")
    var ports: String

    @OptionGroup var output: OutputOptions

    @OptionGroup var namespaces: NamespaceOptions

    func run() throws {
        let spec = try parsePorts(ports)
        let protos = spec.protocols(default: [.tcp, .udp])
        if let targets = try namespaces.targets() {
            return try whoInNamespaces(targets, spec: spec, protocols: protos)
        }
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

extension Who {
    /// `--netns`/`--all-namespaces`: the holders in each namespace, each row saying where.
    private func whoInNamespaces(_ targets: NamespaceTargets, spec: PortSpec, protocols: Set<TransportProtocol>) throws {
        var results: [(NetworkNamespace, PortHolders)] = []
        var notes = targets.notes
        var problem: PortwatchError?
        for (ns, source) in targets.list {
            let report = try findHolders(spec, protocols: protocols, source: source)
            for row in report.ports { results.append((ns, row)) }
            for note in report.notes where !notes.contains(note) { notes.append(note) }
            problem = problem ?? report.ownerProblem
        }
        let found = results.reduce(0) { $0 + $1.1.processes.count }
        if output.json {
            output.print { w in
                w.beginObject()
                w.array("results") { w in
                    for (ns, row) in results {
                        w.whoEntry(row) { w in w.namespaceMembers(ns, processes: row.processes) }
                    }
                }
                w.notes(notes)
                w.endObject()
            }
        } else if found > 0 {
            var table = Table([.init(title: "NAMESPACE"), .init(title: "PROTO"), .init(title: "PORT", align: .right),
                               .init(title: "PID", align: .right), .init(title: "USER"), .init(title: "NAME"),
                               .init(title: "UNIT/CONTAINER"), .init(title: "HOLDS"), .init(title: "COMMAND", flexible: true)])
            for (ns, row) in results {
                for process in row.processes {
                    let held = row.sockets(heldBy: process.pid)
                    let kinds = HoldKind.allCases.filter { k in held.contains { $0.kind == k } }.map(\.rawValue)
                    let where_ = process.container.map { "\(process.containerRuntime ?? "container") " + String($0.prefix(12)) }
                        ?? process.unit ?? "-"
                    table.add([ns.label, row.proto.rawValue, String(row.port), String(process.pid), process.user ?? "?",
                               process.name, where_, kinds.joined(separator: ","), process.command])
                }
            }
            emit(table.render(Terminal.stdout))
        } else {
            emit(results.isEmpty ? "nothing holds \(ports)" : "sockets on \(ports) exist but their processes could not be seen")
        }
        if !output.json { for note in notes { printError("note: \(note)") } }
        if found == 0, !results.isEmpty, let problem { throw problem }
        if found == 0 { throw AnswerNo() }
    }
}

import ArgumentParser
import PortwatchCore

/// `portwatch connections`: each connection on the ports, with its counters.
struct Connections: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Each connection to or from the ports: endpoints, state, bytes, segments, retransmits, rtt, queues.")

    @Argument(help: "Ports (local or remote side): 8080, 8000-8100, 22,80,443, ssh, 53/udp.")
    var ports: String

    @Option(name: .long, help: "Only connections in this state.")
    var state: ConnectionStateArgument?

    @Flag(name: .long, help: "Show the owning process of each connection.")
    var processes = false

    @OptionGroup var output: OutputOptions

    @OptionGroup var namespaces: NamespaceOptions

    func run() throws {
        let spec = try parsePorts(ports)
        let wantedState = state?.state
        let protos = spec.protocols(default: [.tcp, .udp])
        var query = SocketQuery(protocols: protos)
        query.ports = portFilters(spec, protocols: protos, matchPeer: true)
        if let wantedState {
            query.states = SocketQuery.stateMask(wantedState == .synRecv ? [.synRecv, .newSynRecv] : [wantedState])
        } else {
            query.states = SocketState.allStatesMask & ~SocketQuery.stateMask([.listen])
        }
        let targets = try namespaces.targets()
        let options = SnapshotOptions(query: query, processes: .none, socketSource: .fromEnvironment)
        var sockets: [SocketRecord] = []
        // Which namespace each socket came from (with --netns/--all-namespaces).
        var namespaceOf: [NetworkNamespace] = []
        if let targets {
            for (ns, source) in targets.list {
                let part = try PortSnapshot.take(options, source: source).sockets
                sockets += part
                namespaceOf += Array(repeating: ns, count: part.count)
            }
            if !output.json { for note in targets.notes { printError("note: \(note)") } }
        } else {
            sockets = try PortSnapshot.take(options).sockets
        }
        let tagged = (targets?.list.count ?? 0) > 1
        // Indices, not copies: a socket record is large, and tens of thousands of them are
        // filtered and sorted here.
        var order: [Int] = sockets.indices.filter { i in
            let s = sockets[i]
            return !s.isListening && (spec.contains(port: s.local.port, proto: s.proto) || spec.contains(port: s.peer.port, proto: s.proto))
        }
        let keys = sockets.map { ($0.local, $0.peer) }
        order.sort { i, j in keys[i].0 != keys[j].0 ? keys[i].0 < keys[j].0 : keys[i].1 < keys[j].1 }
        let connections = order.lazy.map { sockets[$0] }
        var scan: ProcessScan? = nil
        if processes {
            scan = ProcessScanner.scan(inodes: Set(connections.map(\.inode).filter { $0 != 0 }))
        }
        if output.json {
            output.print { w in
                w.beginObject()
                w.array("connections") { w in
                    for i in order {
                        let owners = scan?.processes(owning: sockets[i].inode)
                        if namespaceOf.isEmpty {
                            w.connection(sockets[i], processes: owners)
                        } else {
                            w.connection(sockets[i], processes: owners) { w in w.namespaceMembers(namespaceOf[i], processes: owners ?? []) }
                        }
                    }
                }
                if let targets { w.notes(targets.notes) }
                w.endObject()
            }
        } else if connections.isEmpty {
            emit("no connections on \(ports)")
        } else {
            var columns: [Table.Column] = tagged ? [.init(title: "NAMESPACE")] : []
            columns += [
                .init(title: "PROTO"), .init(title: "STATE"), .init(title: "LOCAL"), .init(title: "PEER"),
                .init(title: "RX", align: .right), .init(title: "TX", align: .right),
                .init(title: "SEGS IN/OUT", align: .right), .init(title: "RETRANS", align: .right),
                .init(title: "RTT", align: .right), .init(title: "RECV-Q", align: .right), .init(title: "SEND-Q", align: .right),
            ]
            if processes { columns.append(.init(title: "PROCESS", flexible: true)) }
            var table = Table(columns)
            for i in order {
                let c = sockets[i]
                var cells: [String] = tagged ? [namespaceOf[i].label] : []
                cells += [c.proto.rawValue, c.state.name, c.local.description, c.peer.description]
                if let t = c.tcp {
                    let rtt: String = formatRTT(micros: t.rttMicros)
                    cells += [formatBytes(c.payloadReceived), formatBytes(c.payloadSent),
                              "\(t.segmentsIn)/\(t.segmentsOut)", String(t.totalRetransmits), rtt]
                } else {
                    cells += ["-", "-", "-", "-", "-"]
                }
                cells += [String(c.receiveQueue), String(c.sendQueue)]
                if let scan { cells.append(processList(scan.processes(owning: c.inode))) }
                table.add(cells)
            }
            emit(table.render(Terminal.stdout))
        }
        if connections.isEmpty { throw AnswerNo() }
    }
}

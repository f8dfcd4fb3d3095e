import PortwatchCore
import Yams

// `ports:` — names and expectations for single ports.

extension ConfigReader {
    static let portKeys = ["port", "protocol", "name", "expect", "max_connections", "netns"]

    mutating func readPorts(_ node: Node) -> [PortExpectation] {
        guard let items = list(node, "ports") else { return [] }
        var result: [PortExpectation] = []
        var firstLine: [String: Int] = [:]
        for (index, item) in items.enumerated() {
            let path = "ports[\(index)]"
            guard let entry = settings(item, path: path, keys: Self.portKeys) else { continue }
            guard let portNode = entry["port"] else {
                report(at: entry.mark, path, "missing key 'port'")
                continue
            }
            var expectation: PortExpectation?
            if let (port, proto) = singlePort(portNode, entry.path("port")) {
                var chosen = proto ?? .tcp
                if let protoNode = entry["protocol"],
                   let explicit = transportProtocol(protoNode, entry.path("protocol")) {
                    if let proto, proto != explicit {
                        report(at: protoNode.mark, entry.path("protocol"),
                               "\(explicit.rawValue) contradicts port '\(portNode.scalar?.string ?? "")'")
                    }
                    chosen = explicit
                }
                expectation = PortExpectation(proto: chosen, port: port)
                var key = "\(port)/\(chosen.rawValue)"
                if let node = entry["netns"], let namespace = namespace(node, entry.path("netns")) {
                    expectation?.namespace = namespace
                    if let namespace { key += " in netns \(namespace)" }
                }
                if let line = firstLine[key] {
                    report(at: portNode.mark, entry.path("port"), "\(key) is already listed at line \(line)")
                } else {
                    firstLine[key] = portNode.mark?.line ?? 1
                }
            } else if let protoNode = entry["protocol"] {
                _ = transportProtocol(protoNode, entry.path("protocol"))
            }
            if let node = entry["name"], let name = string(node, entry.path("name")) { expectation?.name = name }
            if let node = entry["expect"], let expect = expectedState(node, entry.path("expect")) {
                expectation?.expect = expect
            }
            if let node = entry["max_connections"],
               let limit = integer(node, entry.path("max_connections"), in: 1...10_000_000) {
                expectation?.maxConnections = limit
            }
            if let expectation { result.append(expectation) }
        }
        return result
    }

    /// One port, as a number (`443`), with a protocol (`53/udp`) or a service name (`https`); the
    /// protocol is returned when the text fixes it.
    private mutating func singlePort(_ node: Node, _ path: String) -> (UInt16, TransportProtocol?)? {
        guard let text = text(node, path, expected: "a port (e.g. 443 or \"53/udp\")") else { return nil }
        let spec: PortSpec
        do {
            spec = try PortSpec(parsing: text)
        } catch {
            report(at: node.mark, path, error.message)
            return nil
        }
        guard spec.isSinglePort, let first = spec.items.first else {
            report(at: node.mark, path, "'\(text)' is more than one port; list each port on its own "
                   + "(a rule's ports: takes ranges and lists)")
            return nil
        }
        let protocols = Set(spec.items.map(\.proto))
        return (first.range.lowerBound, protocols.count == 1 ? first.proto : nil)
    }

    /// A port's `netns:` must name a namespace the daemon watches (`namespaces:`), or its
    /// expectation could never be met: checked once `namespaces:` is read.
    mutating func checkPortNamespaces(_ node: Node, watched: NamespaceSelection?) {
        guard case .sequence(let items) = node else { return }
        for (index, item) in items.enumerated() {
            guard case .mapping(let mapping) = item,
                  let value = mapping.first(where: { $0.key.string == "netns" })?.value,
                  let text = value.string, !text.hasPrefix("pid:"),
                  let label = (try? HistoryNamespace.parse(text, option: "netns")) ?? nil else { continue }
            checkWatched(label, at: value.mark, "ports[\(index)].netns", watched: watched)
        }
    }

    /// Reports a namespace `label` (not the host) that `namespaces:` does not watch.
    mutating func checkWatched(_ label: String, at mark: Mark?, _ path: String, watched: NamespaceSelection?) {
        switch watched {
        case .all: return
        case .list(let names) where names.contains(label): return
        case .list(let names):
            report(at: mark, path,
                   "'\(label)' is not among namespaces: [\(names.joined(separator: ", "))], so the daemon does not watch it")
        default:
            report(at: mark, path,
                   "the daemon watches no other network namespace: add namespaces: all or a list naming '\(label)'")
        }
    }

    /// `netns:` of a port: `host` (nil, the daemon's own), a name from /run/netns or `net:[INODE]`,
    /// as the daemon labels namespaces; not `pid:PID`, which names a namespace only while that
    /// process lives. Returns nil wrapped in an optional for `host`; nil when invalid.
    mutating func namespace(_ node: Node, _ path: String) -> String?? {
        let expected = "host, a name from /run/netns or net:[INODE]"
        guard let text = text(node, path, expected: expected) else { return nil }
        guard !text.hasPrefix("pid:") else {
            report(at: node.mark, path, "'\(text)': a pid names a namespace only while the process lives; expected \(expected)")
            return nil
        }
        do {
            return .some(try HistoryNamespace.parse(text, option: "netns"))
        } catch {
            report(at: node.mark, path, "'\(text)': expected \(expected)")
            return nil
        }
    }

    private mutating func transportProtocol(_ node: Node, _ path: String) -> TransportProtocol? {
        guard let text = text(node, path, expected: "tcp or udp") else { return nil }
        guard let proto = TransportProtocol(rawValue: text.lowercased()) else {
            report(at: node.mark, path, "unknown protocol '\(text)' (expected tcp or udp)")
            return nil
        }
        return proto
    }

    private mutating func expectedState(_ node: Node, _ path: String) -> ExpectedState? {
        let names = ExpectedState.allCases.map(\.rawValue)
        guard let text = text(node, path, expected: names.joined(separator: " or ")) else { return nil }
        guard let state = ExpectedState(rawValue: text) else {
            let hint = closestMatch(to: text, among: names).map { " (did you mean '\($0)'?)" } ?? ""
            report(at: node.mark, path, "unknown expectation '\(text)'\(hint); expected \(names.joined(separator: " or "))")
            return nil
        }
        return state
    }
}

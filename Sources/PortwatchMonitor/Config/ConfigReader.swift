import PortwatchCore
import Yams

/// Walks a parsed YAML tree and collects every problem instead of stopping at the first, so one
/// `config check` run lists them all. The typed readers below return nil after reporting, and the
/// section readers (one file each) keep the default for any value that was wrong.
struct ConfigReader {
    /// The config file as the caller named it (used in every problem).
    let file: String
    /// Relative paths in the config (token file, database) are taken from here: the config's own
    /// directory, so the daemon finds them whatever its working directory. nil keeps them as written.
    let baseDirectory: String?
    private(set) var problems: [ConfigProblem] = []

    init(file: String) {
        self.file = file
        if let slash = file.lastIndex(of: "/") {
            let directory = String(file[..<slash])
            baseDirectory = directory.isEmpty ? "/" : directory
        } else {
            baseDirectory = nil
        }
    }

    /// Records a problem at `mark` (the start of the file when the node has none), prefixed with
    /// the key path so the message names the setting even without the file at hand.
    mutating func report(at mark: Mark?, _ path: String, _ message: String) {
        problems.append(ConfigProblem(file: file, line: mark?.line ?? 1, column: mark?.column ?? 1,
                                      message: path.isEmpty ? message : "\(path): \(message)"))
    }

    /// A path from the config, relative ones resolved against the config file's directory.
    func resolvePath(_ path: String) -> String {
        guard !path.hasPrefix("/"), let baseDirectory else { return path }
        return baseDirectory == "/" ? "/" + path : baseDirectory + "/" + path
    }

    // MARK: - Mappings

    /// Reads a mapping of settings whose keys must be among `keys`; reports unknown keys (with a
    /// suggestion) and keys that are not plain names. A key written with no value (`database:`)
    /// reads as an empty mapping, so its defaults apply.
    mutating func settings(_ node: Node, path: String, keys: [String]) -> Settings? {
        if isNull(node) { return Settings(path: path, mark: node.mark, entries: []) }
        guard case .mapping(let mapping) = node else {
            let place = path.isEmpty ? " at the top level" : ""
            report(at: node.mark, path, "expected a mapping of settings (key: value)\(place), found \(describe(node))")
            return nil
        }
        var entries: [Settings.Entry] = []
        for (key, value) in expandingMerges(mapping) {
            guard case .scalar(let scalar) = key else {
                report(at: key.mark, path, "a key must be a plain name, found \(describe(key))")
                continue
            }
            let name = scalar.string
            if keys.contains(name) {
                entries.append(.init(key: name, keyMark: key.mark, value: value))
            } else {
                report(at: key.mark, path, unknownKeyMessage(name, keys: keys, topLevel: path.isEmpty))
            }
        }
        return Settings(path: path, mark: node.mark, entries: entries)
    }

    /// The pairs of a mapping with YAML merge keys (`<<: *defaults`) expanded; keys written in the
    /// mapping itself win over merged ones, as YAML specifies.
    private func expandingMerges(_ mapping: Node.Mapping) -> [(Node, Node)] {
        var own: [(Node, Node)] = []
        var merged: [(Node, Node)] = []
        for (key, value) in mapping {
            if case .scalar(let s) = key, s.string == "<<", s.style == .plain {
                let sources: [Node] = value.sequence.map(Array.init) ?? [value]
                for source in sources {
                    if let inner = source.mapping { merged.append(contentsOf: expandingMerges(inner)) }
                }
            } else {
                own.append((key, value))
            }
        }
        var seen = Set(own.compactMap { $0.0.scalar?.string })
        var result = own
        for pair in merged {
            guard let name = pair.0.scalar?.string, !seen.contains(name) else { continue }
            seen.insert(name)
            result.append(pair)
        }
        return result
    }

    private func unknownKeyMessage(_ name: String, keys: [String], topLevel: Bool) -> String {
        if let suggestion = closestMatch(to: name, among: keys) {
            return "unknown key '\(name)' (did you mean '\(suggestion)'?)"
        }
        // `max_size: 1GB` written at the top level: say where it goes.
        if topLevel, let home = Self.sectionHolding(name) {
            return "unknown key '\(name)' at the top level (it belongs under '\(home)')"
        }
        return "unknown key '\(name)' (known keys: \(keys.joined(separator: ", ")))"
    }

    /// The section whose entries take `key`, for keys written at the wrong level.
    static func sectionHolding(_ key: String) -> String? {
        let sections: [(String, [String])] = [
            ("database", databaseKeys), ("database.retention", retentionKeys), ("detectors", detectorKeys),
            ("detectors.port_scan", portScanKeys), ("detectors.syn_flood", synFloodKeys),
            ("detectors.connection_storm", connectionStormKeys),
            ("metrics", metricsKeys), ("rules", ruleKeys), ("ports", portKeys), ("channels", ["type", "url", "command", "timeout"]),
            ("probes", probeKeys),
        ]
        return sections.first { $0.1.contains(key) }?.0
    }

    // MARK: - Lists and scalars

    /// The items of a list; a key with no value reads as an empty list.
    mutating func list(_ node: Node, _ path: String) -> [Node]? {
        if isNull(node) { return [] }
        guard case .sequence(let sequence) = node else {
            report(at: node.mark, path, "expected a list, found \(describe(node))")
            return nil
        }
        return Array(sequence)
    }

    /// The text of any scalar (quoted or not); `what` says what was expected, for the message.
    mutating func text(_ node: Node, _ path: String, expected what: String) -> String? {
        guard case .scalar(let scalar) = node, !isNull(node) else {
            report(at: node.mark, path, "expected \(what), found \(describe(node))")
            return nil
        }
        return scalar.string
    }

    /// A non-empty string.
    mutating func string(_ node: Node, _ path: String) -> String? {
        guard let value = text(node, path, expected: "a string") else { return nil }
        if value.allSatisfy(\.isWhitespace) {
            report(at: node.mark, path, "must not be empty")
            return nil
        }
        // Names end up in logs, label values and JSON, where a newline or escape breaks a line.
        if value.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) {
            report(at: node.mark, path, "must not contain control characters (newlines, tabs, escapes)")
            return nil
        }
        return value
    }

    /// `true` or `false` (YAML 1.1's yes/no/on/off too), unquoted.
    mutating func bool(_ node: Node, _ path: String) -> Bool? {
        if case .scalar(let scalar) = node, scalar.style == .plain {
            switch scalar.string.lowercased() {
            case "true", "yes", "on": return true
            case "false", "no", "off": return false
            default: break
            }
        }
        report(at: node.mark, path, "expected true or false, found \(describe(node))")
        return nil
    }

    /// An unquoted whole number within `range`.
    mutating func integer(_ node: Node, _ path: String, in range: ClosedRange<Int>) -> Int? {
        guard case .scalar(let scalar) = node, scalar.style == .plain, let value = Int(scalar.string) else {
            report(at: node.mark, path, "expected a whole number, found \(describe(node))")
            return nil
        }
        guard range.contains(value) else {
            report(at: node.mark, path, "must be between \(range.lowerBound) and \(range.upperBound), found \(value)")
            return nil
        }
        return value
    }

    /// An unquoted finite number (`5000`, `0.5`, `1e6`).
    mutating func number(_ node: Node, _ path: String) -> Double? {
        guard case .scalar(let scalar) = node, scalar.style == .plain,
              let value = Double(scalar.string), value.isFinite else {
            report(at: node.mark, path, "expected a number, found \(describe(node))")
            return nil
        }
        return value
    }

    /// A duration (`500ms`, `5s`, `1m30s`; a bare number is seconds) at least `minimum` long.
    mutating func duration(_ node: Node, _ path: String, minimum: Duration = .zero,
                           maximum: Duration? = nil) -> Duration? {
        guard let text = text(node, path, expected: "a duration (e.g. 500ms, 5s, 2m, 1h, 7d)") else { return nil }
        let value: Duration
        do {
            value = try parseDuration(text)
        } catch {
            report(at: node.mark, path, error.message)
            return nil
        }
        if value < minimum {
            report(at: node.mark, path, "must be at least \(formatDuration(minimum)), found \(text)")
            return nil
        }
        if let maximum, value > maximum {
            report(at: node.mark, path, "must be at most \(formatDuration(maximum)), found \(text)")
            return nil
        }
        return value
    }

    /// A size in bytes (`500MB`, `64KiB`) at least `minimum`.
    mutating func size(_ node: Node, _ path: String, minimum: UInt64) -> UInt64? {
        guard let text = text(node, path, expected: "a size (e.g. 500MB, 1GB, 64KiB)") else { return nil }
        let value: UInt64
        do {
            value = try parseSize(text)
        } catch {
            report(at: node.mark, path, error.message)
            return nil
        }
        guard value >= minimum else {
            report(at: node.mark, path, "must be at least \(formatBytes(minimum)), found \(text)")
            return nil
        }
        return value
    }

    // MARK: - Describing nodes

    /// A plain `~`, `null` or nothing at all.
    func isNull(_ node: Node) -> Bool {
        guard case .scalar(let scalar) = node, scalar.style == .plain else { return false }
        return ["", "~", "null", "Null", "NULL"].contains(scalar.string)
    }

    /// What a node is, for "found ..." in messages.
    func describe(_ node: Node) -> String {
        switch node {
        case .scalar(let scalar):
            if isNull(node) { return "nothing" }
            let text = scalar.string.count > 40 ? String(scalar.string.prefix(40)) + "..." : scalar.string
            return scalar.style == .plain ? "'\(text)'" : "the string '\(text)'"
        case .sequence: return "a list"
        case .mapping: return "a mapping"
        case .alias: return "an alias"
        }
    }
}

/// A mapping of settings as read: its known keys in file order, with their marks.
struct Settings {
    struct Entry {
        var key: String
        var keyMark: Mark?
        var value: Node
    }

    /// Key path of the mapping itself (`rules[2]`, `database.retention`; empty at the top).
    let path: String
    /// Where the mapping starts: missing keys are reported here.
    let mark: Mark?
    let entries: [Entry]

    /// The value of a key, when present.
    subscript(key: String) -> Node? { entries.first { $0.key == key }?.value }

    /// Where a key is written.
    func keyMark(_ key: String) -> Mark? { entries.first { $0.key == key }?.keyMark }

    /// The path of a key in this mapping, for messages.
    func path(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }
}

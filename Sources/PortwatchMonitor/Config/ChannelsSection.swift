import Foundation
import PortwatchCore
import Yams

// `channels:` — where alerts go.

extension ConfigReader {
    static let channelTypes = ["log", "webhook", "alertmanager", "exec"]
    /// The keys each channel type takes (besides `type`).
    static let channelKeys: [String: [String]] = [
        "log": [], "webhook": ["url", "timeout"], "alertmanager": ["url", "timeout"], "exec": ["command", "timeout"],
    ]
    static let httpChannelTimeout: Duration = .seconds(5)
    static let execChannelTimeout: Duration = .seconds(10)
    static let channelTimeoutRange: (Duration, Duration) = (.milliseconds(10), .seconds(600))

    mutating func readChannels(_ node: Node) -> [ChannelConfig] {
        guard let items = list(node, "channels") else { return [] }
        var channels: [ChannelConfig] = []
        for (index, item) in items.enumerated() {
            let path = "channels[\(index)]"
            // `- log` is the whole of a log channel.
            if case .scalar(let scalar) = item, scalar.string == "log" {
                channels.append(.log)
                continue
            }
            guard let entry = settings(item, path: path, keys: ["type", "url", "timeout", "command"]) else { continue }
            guard let typeNode = entry["type"] else {
                report(at: entry.mark, path, "missing key 'type' (one of: \(Self.channelTypes.joined(separator: ", ")))")
                continue
            }
            guard let type = text(typeNode, entry.path("type"), expected: "a channel type") else { continue }
            guard let allowed = Self.channelKeys[type] else {
                let hint = closestMatch(to: type, among: Self.channelTypes).map { " (did you mean '\($0)'?)" } ?? ""
                report(at: typeNode.mark, entry.path("type"),
                       "unknown channel type '\(type)'\(hint); expected one of: \(Self.channelTypes.joined(separator: ", "))")
                continue
            }
            var misplaced = false
            for extra in entry.entries where extra.key != "type" && !allowed.contains(extra.key) {
                let takes = allowed.isEmpty ? "no other keys" : "only \(allowed.joined(separator: ", "))"
                report(at: extra.keyMark, path, "'\(extra.key)' does not apply to a \(type) channel (it takes \(takes))")
                misplaced = true
            }
            let defaultTimeout = type == "exec" ? Self.execChannelTimeout : Self.httpChannelTimeout
            var timeout: Duration? = defaultTimeout
            if let node = entry["timeout"], allowed.contains("timeout") {
                timeout = duration(node, entry.path("timeout"), minimum: Self.channelTimeoutRange.0,
                                   maximum: Self.channelTimeoutRange.1)
            }
            switch type {
            case "log":
                if !misplaced { channels.append(.log) }
            case "webhook", "alertmanager":
                guard let urlNode = entry["url"] else {
                    report(at: entry.mark, path, "missing key 'url' (a \(type) channel posts to it)")
                    continue
                }
                let url = httpURL(urlNode, entry.path("url"))
                guard let url, let timeout, !misplaced else { continue }
                channels.append(type == "webhook" ? .webhook(url: url, timeout: timeout)
                                                  : .alertmanager(url: url, timeout: timeout))
            default:
                guard let commandNode = entry["command"] else {
                    report(at: entry.mark, path, "missing key 'command' (e.g. [\"/usr/local/bin/notify\", \"--urgent\"])")
                    continue
                }
                let command = execCommand(commandNode, entry.path("command"))
                guard let command, let timeout, !misplaced else { continue }
                channels.append(.exec(command: command, timeout: timeout))
            }
        }
        return channels
    }

    /// An `http://` or `https://` URL with a host.
    private mutating func httpURL(_ node: Node, _ path: String) -> String? {
        guard let text = string(node, path) else { return nil }
        guard let components = URLComponents(string: text), let scheme = components.scheme?.lowercased() else {
            report(at: node.mark, path, "'\(text)' is not a URL (expected http://HOST[:PORT]/PATH)")
            return nil
        }
        guard scheme == "http" || scheme == "https" else {
            report(at: node.mark, path, "'\(text)' is not an http:// or https:// URL")
            return nil
        }
        guard let host = components.host, !host.isEmpty else {
            report(at: node.mark, path, "'\(text)' has no host (expected http://HOST[:PORT]/PATH)")
            return nil
        }
        return text
    }

    /// The argument vector of an exec channel: a list of strings (run without a shell), or a single
    /// program path. The program must exist when it is given as a path.
    private mutating func execCommand(_ node: Node, _ path: String) -> [String]? {
        var command: [String] = []
        switch node {
        case .sequence(let sequence):
            for item in sequence {
                guard let argument = text(item, path, expected: "a string argument") else { return nil }
                command.append(argument)
            }
        case .scalar(let scalar) where !isNull(node):
            if scalar.string.contains(where: \.isWhitespace) {
                report(at: node.mark, path, "write the command as a list, e.g. [\"/usr/local/bin/notify\", \"--urgent\"] "
                       + "(it runs without a shell)")
                return nil
            }
            command = [scalar.string]
        default:
            report(at: node.mark, path, "expected a list of strings, found \(describe(node))")
            return nil
        }
        guard let program = command.first, !program.isEmpty else {
            report(at: node.mark, path, "is empty; give the program and its arguments")
            return nil
        }
        if program.contains("/") {
            var info = stat()
            if stat(program, &info) != 0 || (info.st_mode & S_IFMT) != S_IFREG || access(program, X_OK) != 0 {
                report(at: node.mark, path, "'\(program)' is not an executable file")
                return nil
            }
        }
        return command
    }
}

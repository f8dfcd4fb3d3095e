import PortwatchCore
import Yams

/// Reads and validates the daemon's YAML config (`portwatch daemon --config`, `portwatch config check`).
public enum ConfigLoader {
    /// The largest config file read; real ones are a few KB.
    public static let maxFileSize = 4 * 1024 * 1024

    /// Reads `file` and parses it; every problem found is in the error.
    public static func load(file: String) throws(ConfigError) -> MonitorConfig {
        let bytes: [UInt8]
        switch readSmallFile(file, limit: maxFileSize) {
        case .success(let b): bytes = b
        case .failure(.unreadable(let reason)):
            throw ConfigError(problems: [ConfigProblem(file: file, line: 0, column: 0, message: "cannot read: \(reason)")])
        case .failure(let error):
            throw ConfigError(problems: [ConfigProblem(file: file, line: 0, column: 0, message: error.predicate)])
        }
        switch decodeUTF8(bytes) {
        case .success(let text):
            return try parse(text, file: file)
        case .failure(let place):
            throw ConfigError(problems: [ConfigProblem(file: file, line: place.line, column: place.column,
                                                       message: "not UTF-8 text (invalid byte here)")])
        }
    }

    /// Parses config text; `file` names it in problems and is where relative paths start from.
    /// An empty document gives the defaults.
    public static func parse(_ yaml: String, file: String) throws(ConfigError) -> MonitorConfig {
        var text = yaml
        if text.hasPrefix("\u{FEFF}") { text.removeFirst() }
        let root: Node?
        do {
            // UTF-8 explicitly: the default lets an environment variable switch encodings (and print).
            root = try Parser(yaml: text, encoding: .utf8).singleRoot()
        } catch {
            throw ConfigError(problems: [yamlProblem(error, yaml: text, file: file)])
        }
        var reader = ConfigReader(file: file)
        let config = reader.readConfig(root)
        if !reader.problems.isEmpty { throw ConfigError(problems: reader.problems) }
        return config
    }

    /// The bearer token in `file`, trimmed; the HTTP layer compares requests against it.
    public static func readToken(file: String) throws(ConfigError) -> String {
        switch loadToken(file) {
        case .success(let token): return token
        case .failure(let error):
            throw ConfigError(problems: [ConfigProblem(file: file, line: 0, column: 0,
                                                       message: "token file \(error.predicate)")])
        }
    }

    // MARK: - YAML syntax errors

    /// A libyaml error as a problem at its line and column.
    static func yamlProblem(_ error: Error, yaml: String, file: String) -> ConfigProblem {
        func problem(_ place: (line: Int, column: Int), _ message: String) -> ConfigProblem {
            ConfigProblem(file: file, line: max(1, place.line), column: max(1, place.column), message: message)
        }
        func at(_ mark: Mark) -> (line: Int, column: Int) { (mark.line, mark.column) }
        func syntax(_ context: YamlError.Context?, _ text: String, _ mark: Mark) -> ConfigProblem {
            // libyaml's context names the construct that was open ("while parsing a block mapping")
            // and where it started, which is often the line that really needs fixing.
            let opened = context.map { c in
                c.mark.line == mark.line && c.mark.column == mark.column
                    ? " (\(c.text))" : " (\(c.text) that starts at line \(c.mark.line), column \(c.mark.column))"
            } ?? ""
            return problem(at(mark), "YAML syntax error: \(text)\(opened)")
        }
        guard let yamlError = error as? YamlError else {
            return problem((1, 1), "cannot parse YAML: \(error)")
        }
        switch yamlError {
        case .scanner(let context, let text, let mark, _), .parser(let context, let text, let mark, _):
            if text.hasPrefix("Maximum nesting level reached") {
                return problem(at(mark), "YAML syntax error: nested too deeply (more than 1000 levels)")
            }
            return syntax(context, text, mark)
        case .composer(let context, let text, let mark, _):
            // "expected a single document" carries a context mark of 1:1 that only adds noise.
            if text == "but found another document" {
                return problem(at(mark), "YAML syntax error: more than one document (remove the '---' separator)")
            }
            return syntax(context, text, mark)
        case .reader(let text, let offset, _, _):
            return problem(offset.map { position(ofCharacter: $0, in: yaml) } ?? (1, 1), "YAML syntax error: \(text)")
        case .duplicatedKeysInMapping(let duplicates, let context):
            let key = duplicates.first ?? ""
            let place = laterOccurrence(of: key, after: context.mark, in: yaml) ?? at(context.mark)
            return problem(place, "duplicate key '\(key)' (first at line \(context.mark.line))")
        default:
            return problem((1, 1), "cannot parse YAML: \(yamlError)")
        }
    }

    /// 1-based line and column (in scalars) of a character offset.
    private static func position(ofCharacter offset: Int, in text: String) -> (line: Int, column: Int) {
        var line = 1
        var column = 1
        for character in text.prefix(offset) {
            if character.isNewline { line += 1; column = 1 } else { column += character.unicodeScalars.count }
        }
        return (line, column)
    }

    /// Where a duplicated block-mapping key is written again: the next line with `key:` at the same
    /// column as its first occurrence. libyaml reports only the first, which is the one to keep.
    private static func laterOccurrence(of key: String, after first: Mark, in text: String) -> (line: Int, column: Int)? {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        guard first.line >= 1, first.line < lines.count else { return nil }
        for index in first.line..<lines.count {
            let scalars = Array(lines[index].unicodeScalars)
            guard scalars.count >= first.column - 1 + key.unicodeScalars.count else { continue }
            let indent = scalars[0..<(first.column - 1)]
            guard indent.allSatisfy({ $0 == " " || $0 == "-" }) else { continue }
            var rest = String(String.UnicodeScalarView(scalars[(first.column - 1)...]))
            guard rest.hasPrefix(key) else { continue }
            rest.removeFirst(key.count)
            if rest.drop(while: { $0 == " " }).hasPrefix(":") {
                return (index + 1, first.column)
            }
        }
        return nil
    }
}

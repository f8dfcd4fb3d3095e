/// One thing wrong with a config file, at the place it was found.
public struct ConfigProblem: Sendable, Hashable, CustomStringConvertible {
    /// The config file (or token file) the problem is in, as the caller named it.
    public var file: String
    /// 1-based line; 0 when the problem is about the file as a whole (missing, unreadable).
    public var line: Int
    /// 1-based column, counted in Unicode scalars as libyaml does; 0 with `line` 0.
    public var column: Int
    /// What is wrong, naming the key (`rules[1].metric: unknown metric 'conns' ...`).
    public var message: String

    /// Makes a problem at a place in a file.
    public init(file: String, line: Int, column: Int, message: String) {
        self.file = file
        self.line = line
        self.column = column
        self.message = message
    }

    /// `FILE:LINE:COLUMN: message`, the form compilers use and editors jump to (`FILE: message`
    /// for a problem with the whole file).
    public var description: String {
        line > 0 ? "\(file):\(line):\(column): \(message)" : "\(file): \(message)"
    }
}

/// Every problem found in a config file, in file order; thrown when the file is not usable.
public struct ConfigError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The problems, sorted by line and column; never empty.
    public var problems: [ConfigProblem]

    /// Makes an error from problems (sorted by position, ties in the order found).
    public init(problems: [ConfigProblem]) {
        self.problems = problems.enumerated().sorted { a, b in
            (a.element.line, a.element.column, a.offset) < (b.element.line, b.element.column, b.offset)
        }.map(\.element)
    }

    /// One problem per line.
    public var description: String { problems.map(\.description).joined(separator: "\n") }
}

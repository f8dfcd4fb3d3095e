/// An error that answers "why could the question not be answered": the CLI prints
/// `portwatch: <message>` and exits 2.
public struct PortwatchError: Error, CustomStringConvertible, Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        /// The user's input was malformed (a port, a duration, a host...).
        case usage
        /// Not allowed to see or do this (needs root or a capability).
        case permission
        /// The system failed a call we needed.
        case system
    }
    public var kind: Kind
    public var message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public static func usage(_ message: String) -> PortwatchError { .init(.usage, message) }
    public static func system(_ message: String) -> PortwatchError { .init(.system, message) }
    public static func permission(_ message: String) -> PortwatchError { .init(.permission, message) }

    public var description: String { message }
}

/// Which network namespace a query keeps (`?netns=` of `/api/v1/ports` and `/api/v1/events`,
/// `portwatch events --netns`): the daemon's own, or another one by its label
/// (`NetworkNamespace.daemonLabel`). No filter at all is `nil` where one is taken.
public enum NamespaceFilter: Sendable, Hashable {
    /// The daemon's own namespace (`host`).
    case host
    /// Another namespace, by its label.
    case label(String)

    /// The filter for a label as `HistoryNamespace.parse` returns it (nil: the daemon's own).
    public init(label: String?) {
        self = label.map(NamespaceFilter.label) ?? .host
    }

    /// The label kept; nil for the daemon's own namespace.
    public var label: String? {
        if case .label(let label) = self { return label }
        return nil
    }

    /// Whether a row, event or alert of `namespace` (nil: the daemon's own) passes.
    public func matches(_ namespace: String?) -> Bool { namespace == label }
}

extension MonitorEvent {
    /// The namespace an event is about: its `netns` detail (nil: the daemon's own).
    public var namespace: String? { details["netns"] }
}

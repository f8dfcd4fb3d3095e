// The windows of a view over several network namespaces, and which of them speaks for "the
// system". Every namespace has its own kernel counters (/proc/net/snmp and /proc/net/netstat
// are per namespace, and each namespace's sampler reads files opened inside it), so a view
// over several shows each namespace's own, never one namespace's for all.

/// The windows of a view over namespaces (`top`, `ports --sample`, `check --sample` with
/// `--netns` or `--all-namespaces`): each part's namespace (nil: portwatch's own, without the
/// flags) and its window (nil: the namespace joined at this sample, which is its baseline).
public struct NamespaceWindows: Sendable {
    public var parts: [(namespace: NetworkNamespace?, report: WindowReport?)]

    /// The windows of `parts`, in the view's order.
    public init(_ parts: [(namespace: NetworkNamespace?, report: WindowReport?)]) {
        self.parts = parts
    }

    /// Whether the view is over namespaces (a part names one): its JSON lists each namespace's
    /// system errors.
    public var overNamespaces: Bool { parts.contains { $0.namespace != nil } }

    /// The part whose counters are the view's top-level `system_errors`, as without the flags:
    /// portwatch's own namespace when it is shown, else the only namespace shown (`--netns`).
    /// nil when several other namespaces are shown, or when that part has no window yet.
    public var primary: Int? {
        let own = parts.firstIndex { $0.namespace?.isOwn ?? true }
        guard let index = own ?? (parts.count == 1 ? 0 : nil), parts[index].report != nil else { return nil }
        return index
    }

    /// The length of the view's window: the primary part's, else the first part's with one
    /// (the namespaces are sampled together, their windows differ by the time a dump takes).
    public var seconds: Double? {
        if let primary { return parts[primary].report?.seconds }
        return parts.lazy.compactMap { $0.report?.seconds }.first
    }

    /// Each part's nonzero system error deltas for a table's system line ("name count, …"),
    /// in the parts' order; parts with nothing to say are left out.
    public var systemErrorLines: [(namespace: NetworkNamespace?, line: String)] {
        parts.compactMap { part in
            part.report?.systemErrorsLine.map { (part.namespace, $0) }
        }
    }
}

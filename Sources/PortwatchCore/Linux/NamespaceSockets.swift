#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// sock_diag sockets opened inside network namespaces, one per namespace, kept while the
/// namespace lives: a namespace that goes away is dropped, and one that comes back (a new
/// inode behind the same name) gets a socket of its own. The namespace's kernel settings
/// (ephemeral port range, socket counts) are opened on the same trip and kept with it.
public final class NamespaceSockets: Sendable {
    private let cache = Mutex<[UInt64: SharedTransport]>([:])
    private let choice: SocketSourceChoice

    public init(choice: SocketSourceChoice = .automatic) { self.choice = choice }

    /// A socket source per namespace (opening, in one trip of a dedicated thread, the sockets
    /// not open yet), or why the namespace could not be read. Namespaces not asked for are
    /// forgotten. Our own namespace uses the ordinary source.
    public func sources(for namespaces: [NetworkNamespace]) -> [Result<any SocketSource, PortwatchError>] {
        let wanted = Set(namespaces.map(\.inode))
        let missing = cache.withLock { open in
            open = open.filter { wanted.contains($0.key) }
            return namespaces.filter { !$0.isOwn && open[$0.inode] == nil }
        }
        var failures: [UInt64: PortwatchError] = [:]
        if !missing.isEmpty {
            let opened = NamespaceEntry.forEach(missing) { _ in
                Result { () throws(SystemCallError) in (try NetlinkSocket(), NamespaceKernelSettings()) }
            }
            var fresh: [UInt64: SharedTransport] = [:]
            for (ns, result) in zip(missing, opened) {
                switch result {
                case .success(.success(let (socket, settings))): fresh[ns.inode] = SharedTransport(socket, settings: settings)
                case .success(.failure(let error)): failures[ns.inode] = error.asPortwatchError(needs: "CAP_SYS_ADMIN")
                case .failure(let error): failures[ns.inode] = error
                }
            }
            cache.withLock { $0.merge(fresh) { _, new in new } }
        }
        let open = cache.withLock { $0 }
        return namespaces.map { ns in
            if ns.isOwn { return .success(defaultSocketSource(choice)) }
            if let error = failures[ns.inode] { return .failure(error) }
            guard let transport = open[ns.inode] else { return .failure(.system("network namespace \(ns.label) is gone")) }
            let source: any SocketSource = SockDiagSource(recordTo: choice.recordNetlinkTo,
                                                          openNetlink: {
                // What an abandoned earlier dump left queued is not part of this one.
                transport.transport.discardPending()
                return transport.transport
            }, kernelSettings: transport.settings)
            return .success(source)
        }
    }

    /// Forgets a namespace's socket (after a dump failed: the namespace may be gone).
    public func forget(_ namespace: NetworkNamespace) {
        _ = cache.withLock { $0.removeValue(forKey: namespace.inode) }
    }
}

/// One namespace's sock_diag socket, shared by the dumps of that namespace, and its settings.
// @unchecked Sendable: the socket is only used by one dump at a time — each namespace's source
// belongs to one snapshot or one sampler, which dump sequentially.
final class SharedTransport: @unchecked Sendable {
    let transport: any NetlinkTransport
    let settings: NamespaceKernelSettings
    init(_ transport: any NetlinkTransport, settings: NamespaceKernelSettings) {
        self.transport = transport
        self.settings = settings
    }
}

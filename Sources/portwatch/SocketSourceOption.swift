#if canImport(Glibc)
import Glibc
#endif
import PortwatchCore

extension SocketSourceChoice {
    /// The choice the environment makes: `PORTWATCH_SOCKET_SOURCE=procfs` forces the /proc/net
    /// fallback, `PORTWATCH_RECORD_NETLINK=FILE` records sock_diag replies (test fixtures).
    /// The core reads no environment; this is where the CLI maps it.
    static var fromEnvironment: SocketSourceChoice {
        func env(_ name: String) -> String? { getenv(name).map { String(cString: $0) } }
        return SocketSourceChoice(forceProcfs: env("PORTWATCH_SOCKET_SOURCE") == "procfs",
                                  recordNetlinkTo: env("PORTWATCH_RECORD_NETLINK").flatMap { $0.isEmpty ? nil : $0 })
    }
}

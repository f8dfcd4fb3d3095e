import Foundation
import PortwatchCore

extension ListenAddress {
    /// Parses `host:port` or `[v6]:port` (`127.0.0.1:9910`, `[::1]:9910`, `0.0.0.0:9910`,
    /// `localhost:9910`): the config's `listen` and the daemon's `--listen`.
    public init(parsing text: String) throws(PortwatchError) {
        do {
            let (host, port) = try HostPort.parseTarget(text)
            self.init(host: host, port: port)
        } catch {
            // The core speaks of targets (probe, scan); here it is the address to listen on.
            throw .usage("bad listen address: " + error.message.replacingOccurrences(of: "target", with: "address"))
        }
    }
}

extension MonitorConfig {
    /// Why this config must not start: a listen address other than loopback without a token file
    /// (anyone on the network could read it). nil when it may. Checked again by the daemon after
    /// command-line flags have overridden the file.
    public var missingTokenProblem: String? {
        guard !listen.isLoopback, tokenFile == nil else { return nil }
        return "\(listen) is not a loopback address, so token_file is required "
            + "(clients then send Authorization: Bearer TOKEN)"
    }
}

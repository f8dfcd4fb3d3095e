// Private network namespaces for remote checks, and unique names for them.

import Foundation
#if canImport(Glibc)
import Glibc
#endif

// MARK: - Network namespaces

/// A private pair of network namespaces joined by a veth pair: the client side (where
/// `portwatch` runs, through `ip netns exec`) has 10.250.N.1/30 and fd00:250:N::1/64, the
/// server side 10.250.N.2/30 and fd00:250:N::2/64. Nothing is added to the test host's own
/// namespace, so no address or route of the host can clash; deleting the namespaces deletes
/// the veth pair and every process-free resource in them.
final class NetnsLab: @unchecked Sendable {
    let client: String
    let server: String
    let n: Int
    var clientV4: String { "10.250.\(n).1" }
    var serverV4: String { "10.250.\(n).2" }
    var clientV6: String { "fd00:250:\(n)::1" }
    var serverV6: String { "fd00:250:\(n)::2" }
    private var children: [PythonServer] = []
    private let lock = NSLock()

    private static let counter = Counter()

    /// Creates both namespaces, the veth pair and the addresses; throws (after cleaning up) on failure.
    init() throws {
        guard let ip = TestEnv.ip else { throw SupportError("ip not found") }
        let pid = Int(getpid())
        let k = NetnsLab.counter.next()
        n = (pid + k) % 250 + 1
        client = "pw-\(pid)-\(k)c"
        server = "pw-\(pid)-\(k)s"
        let steps: [[String]] = [
            ["netns", "add", client],
            ["netns", "add", server],
            ["-n", client, "link", "add", "pwc", "type", "veth", "peer", "name", "pws", "netns", server],
            ["-n", client, "link", "set", "lo", "up"],
            ["-n", server, "link", "set", "lo", "up"],
            ["-n", client, "addr", "add", "\(clientV4)/30", "dev", "pwc"],
            ["-n", server, "addr", "add", "\(serverV4)/30", "dev", "pws"],
            ["-n", client, "-6", "addr", "add", "\(clientV6)/64", "dev", "pwc", "nodad"],
            ["-n", server, "-6", "addr", "add", "\(serverV6)/64", "dev", "pws", "nodad"],
            ["-n", client, "link", "set", "pwc", "up"],
            ["-n", server, "link", "set", "pws", "up"],
        ]
        for step in steps {
            let r = runTool(ip, step)
            if r.status != 0 {
                destroy()
                throw SupportError("ip \(step.joined(separator: " ")) failed (\(r.status)): \(r.stderr)")
            }
        }
    }

    deinit { destroy() }

    /// Runs a command inside one of the namespaces.
    @discardableResult
    func exec(_ netns: String, _ command: [String], timeout: Double = 10) -> (status: Int32, stdout: String, stderr: String) {
        guard let ip = TestEnv.ip else { return (-1, "", "ip not found") }
        return runTool(ip, ["netns", "exec", netns] + command, timeout: timeout)
    }

    /// Loads an nft ruleset (text for `nft -f`) in a namespace.
    func nft(_ netns: String, _ ruleset: String) throws {
        guard let nft = TestEnv.nft else { throw SupportError("nft not found") }
        let path = "/tmp/pw-nft-\(getpid())-\(NetnsLab.counter.next()).nft"
        guard FileManager.default.createFile(atPath: path, contents: Data(ruleset.utf8)) else {
            throw SupportError("cannot write \(path)")
        }
        defer { unlink(path) }
        let r = exec(netns, [nft, "-f", path])
        if r.status != 0 { throw SupportError("nft -f failed (\(r.status)): \(r.stderr)\n\(ruleset)") }
    }

    /// Starts a python3 server (see `PythonServer`) inside a namespace; stopped by `destroy`.
    func startServer(_ specs: [String], in netns: String) throws -> PythonServer {
        let s = try PythonServer.start(specs, netns: netns)
        lock.lock(); children.append(s); lock.unlock()
        return s
    }

    /// Stops the children and deletes both namespaces (the veth pair goes with them). Idempotent.
    func destroy() {
        lock.lock()
        let kids = children
        children = []
        lock.unlock()
        for c in kids { c.stop() }
        guard let ip = TestEnv.ip else { return }
        for ns in [client, server] {
            if access("/run/netns/\(ns)", F_OK) == 0 { runTool(ip, ["netns", "delete", ns]) }
        }
    }
}

/// A thread-safe counter for unique names.
final class Counter: @unchecked Sendable {
    private var value = 0
    private let lock = NSLock()
    func next() -> Int {
        lock.lock(); defer { lock.unlock() }
        value += 1
        return value
    }
}

import Foundation

/// The firewall as the audit found it: a ruleset to evaluate, or why there is none.
public enum FirewallState: Sendable {
    /// A ruleset was read (it may have no tables: then nothing is loaded).
    case loaded(FirewallEvaluator)
    /// No verdict is possible: `nft` is missing, or the ruleset could not be read (the reason).
    case unavailable(FirewallVerdict)

    /// Runs `nft -j list ruleset` (in the calling process's network namespace) and parses it.
    /// A missing `nft` means no nftables firewall at all: verdict `none`. A failing one (no
    /// CAP_NET_ADMIN, a broken ruleset) gives `unknown` with nft's own message.
    public static func read(nftPath: String? = nil, timeout: Double = 5) -> FirewallState {
        guard let nft = nftPath ?? findExecutable("nft") else {
            return .unavailable(FirewallVerdict(.none, rule: "no firewall loaded (nft is not installed)"))
        }
        let run = runCommand(nft, ["-j", "list", "ruleset"], timeout: timeout)
        guard run.status == 0 else {
            let message = run.stderr.split(separator: "\n").first.map(String.init) ?? "exit status \(run.status)"
            return .unavailable(FirewallVerdict(.unknown, rule: "cannot read the nftables ruleset: \(message)"))
        }
        // An empty ruleset prints nothing at all on some nft versions.
        if run.stdout.allSatisfy({ $0 == 0x20 || $0 == 0x0A }) {
            return .unavailable(FirewallVerdict(.none, rule: "no firewall loaded"))
        }
        do {
            var ruleset = try NftRuleset(json: run.stdout)
            if ruleset.hasIptablesExtensions {
                for (family, tool) in [("ip", "iptables-nft-save"), ("ip6", "ip6tables-nft-save")] {
                    guard let path = findExecutable(tool) else { continue }
                    let saved = runCommand(path, [], timeout: timeout)
                    if saved.status == 0 { ruleset.attachIptablesSave(String(decoding: saved.stdout, as: UTF8.self), family: family) }
                }
            }
            return .loaded(FirewallEvaluator(ruleset))
        } catch {
            return .unavailable(FirewallVerdict(.unknown, rule: error.message))
        }
    }

    /// The verdict for one port and family.
    public func verdict(proto: TransportProtocol, port: UInt16, family: PacketFamily, overLoopback: Bool = false) -> FirewallVerdict {
        switch self {
        case .loaded(let evaluator): return evaluator.verdict(proto: proto, port: port, family: family, overLoopback: overLoopback)
        case .unavailable(let v): return v
        }
    }

    /// One line about the firewall as a whole.
    public var summary: String {
        switch self {
        case .loaded(let e):
            if e.ruleset.tableCount == 0 { return "no firewall loaded" }
            let input = e.ruleset.chains.filter { $0.hook == "input" }.count
            let rules = e.ruleset.chains.reduce(0) { $0 + $1.rules.count }
            func count(_ n: Int, _ word: String) -> String { "\(n) \(word)\(n == 1 ? "" : "s")" }
            return "nftables: \(count(e.ruleset.tableCount, "table")), \(count(input, "input chain")), \(count(rules, "rule"))"
        case .unavailable(let v): return v.rule
        }
    }
}

/// The first executable named `tool` on PATH or in the sbin directories (where nft lives).
func findExecutable(_ tool: String) -> String? {
    let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
    for dir in path.split(separator: ":").map(String.init) + ["/usr/sbin", "/sbin", "/usr/bin", "/bin"] where !dir.isEmpty {
        let candidate = dir + "/" + tool
        if access(candidate, X_OK) == 0 { return candidate }
    }
    return nil
}

/// Runs a command to completion (killed after `timeout` seconds): status and both outputs.
func runCommand(_ path: String, _ arguments: [String], timeout: Double) -> (status: Int32, stdout: [UInt8], stderr: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: path)
    process.arguments = arguments
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    process.standardInput = FileHandle.nullDevice
    do { try process.run() } catch { return (-1, [], "cannot run \(path): \(error.localizedDescription)") }
    // Read both pipes before waiting: a ruleset larger than a pipe buffer would block nft.
    let group = DispatchGroup()
    // Written once by the reader below before `leave()`, read only after `wait()`: the group
    // orders the two accesses, so no lock is needed.
    nonisolated(unsafe) var errBytes = Data()
    group.enter()
    DispatchQueue.global().async {
        errBytes = err.fileHandleForReading.readDataToEndOfFile()
        group.leave()
    }
    let timer = DispatchWorkItem { if process.isRunning { process.terminate() } }
    DispatchQueue.global().asyncAfter(deadline: .now() + timeout, execute: timer)
    let outBytes = out.fileHandleForReading.readDataToEndOfFile()
    group.wait()
    process.waitUntilExit()
    timer.cancel()
    return (process.terminationStatus, [UInt8](outBytes), String(decoding: errBytes, as: UTF8.self))
}

// Differential test: random socket scenarios, built from a seed in a fresh network namespace,
// and portwatch's answers compared with (a) the truth the scenario reports, (b) `ss -tuanp` in
// the same namespace and (c) /proc/net plus /proc/PID/fd. Every difference is a bug or one of
// the rules in README.md ("How portwatch differs from ss").
//
// CI runs fixed seeds; `PORTWATCH_DIFF_SEEDS=random` (five random seeds, printed on failure) or
// `PORTWATCH_DIFF_SEEDS=3,17` picks others by hand.

import Foundation
import Testing
import PortwatchTestSupport
#if canImport(Glibc)
import Glibc
#endif

private enum DiffSeeds {
    static let fixed: [UInt64] = [1, 7, 42, 2024, 65_537]

    static let chosen: [UInt64] = {
        let text = ProcessInfo.processInfo.environment["PORTWATCH_DIFF_SEEDS"] ?? ""
        if text == "random" {
            var generator = SystemRandomNumberGenerator()
            return (0..<5).map { _ in UInt64.random(in: 1...UInt64(UInt32.max), using: &generator) }
        }
        let listed = text.split(separator: ",").compactMap { UInt64($0.trimmingCharacters(in: .whitespaces)) }
        return listed.isEmpty ? fixed : listed
    }()
}

/// One line of `ss -tuanp`.
private struct SSLine {
    var proto: String
    var state: String
    var recvQ: Int
    var sendQ: Int
    var localAddress: String
    var localPort: Int
    var peerPort: Int?
    var pids: Set<Int>

    /// Parses `tcp LISTEN 0 4 0.0.0.0:21408 0.0.0.0:* users:(("python3",pid=10472,fd=5),...)`.
    init?(_ line: Substring) {
        let fields = line.split(separator: " ", omittingEmptySubsequences: true)
        guard fields.count >= 6, let recvQ = Int(fields[2]), let sendQ = Int(fields[3]) else { return nil }
        func split(_ endpoint: Substring) -> (String, String)? {
            guard let colon = endpoint.lastIndex(of: ":") else { return nil }
            return (String(endpoint[..<colon]), String(endpoint[endpoint.index(after: colon)...]))
        }
        guard let (address, port) = split(fields[4]), let localPort = Int(port), let (_, peer) = split(fields[5]) else { return nil }
        proto = String(fields[0])
        state = String(fields[1])
        self.recvQ = recvQ
        self.sendQ = sendQ
        localAddress = address
        self.localPort = localPort
        peerPort = Int(peer)
        var pids: Set<Int> = []
        let rest = fields.dropFirst(6).joined(separator: " ")
        for part in rest.components(separatedBy: "pid=").dropFirst() {
            if let n = Int(part.prefix { $0.isNumber }) { pids.insert(n) }
        }
        self.pids = pids
    }
}

/// One socket line of /proc/net/{tcp,tcp6,udp,udp6}.
private struct ProcNetLine {
    var proto: String
    var localPort: Int
    var state: String
    var inode: Int
}

/// Everything the test reads from one namespace, besides portwatch.
private struct Observed {
    var ss: [SSLine]
    var procNet: [ProcNetLine]
    /// Socket inode → pids whose /proc/PID/fd hold it (every fd, no limit).
    var inodeHolders: [Int: Set<Int>]
}

/// Runs a command inside `ns`.
private func inNamespace(_ ns: String, _ command: [String], timeout: Double = 60) -> (status: Int32, stdout: String, stderr: String) {
    runTool(TestEnv.ip ?? "ip", ["netns", "exec", ns] + command, timeout: timeout)
}

private func observe(_ ns: String) throws -> Observed {
    let ssRun = inNamespace(ns, ["ss", "-tuanp"])
    guard ssRun.status == 0 else { throw SupportError("ss -tuanp in \(ns): \(ssRun.stderr)") }
    let ss = ssRun.stdout.split(separator: "\n").dropFirst().compactMap(SSLine.init)
    var procNet: [ProcNetLine] = []
    for (file, proto) in [("tcp", "tcp"), ("tcp6", "tcp"), ("udp", "udp"), ("udp6", "udp")] {
        let r = inNamespace(ns, ["cat", "/proc/net/\(file)"])
        guard r.status == 0 else { throw SupportError("/proc/net/\(file) in \(ns): \(r.stderr)") }
        for line in r.stdout.split(separator: "\n").dropFirst() {
            let f = line.split(separator: " ", omittingEmptySubsequences: true)
            guard f.count > 9, let colon = f[1].lastIndex(of: ":"),
                  let port = Int(f[1][f[1].index(after: colon)...], radix: 16), let inode = Int(f[9]) else { continue }
            procNet.append(ProcNetLine(proto: proto, localPort: port, state: String(f[3]), inode: inode))
        }
    }
    // Every fd of every process (the host's /proc sees the namespace's processes too).
    let wanted = Set(procNet.map(\.inode).filter { $0 != 0 })
    var holders: [Int: Set<Int>] = [:]
    let pids = ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap { Int($0) }
    var buffer = [CChar](repeating: 0, count: 256)
    for pid in pids {
        guard let fds = try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd") else { continue }
        for fd in fds {
            let n = readlink("/proc/\(pid)/fd/\(fd)", &buffer, buffer.count - 1)
            guard n > 8 else { continue }
            let link = String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
            guard link.hasPrefix("socket:["), let inode = Int(link.dropFirst(8).dropLast()), wanted.contains(inode) else { continue }
            holders[inode, default: []].insert(pid)
        }
    }
    return Observed(ss: ss, procNet: procNet, inodeHolders: holders)
}

/// Dual-stack and v6only wildcards are both `::` to the kernel; a view may spell them `*` and
/// `[::]` (as ss does). Compares addresses up to that spelling.
private func normalized(_ address: String) -> String {
    switch address {
    case "*", "[::]": return "::"
    default: return address.hasPrefix("[") && address.hasSuffix("]") ? String(address.dropFirst().dropLast()) : address
    }
}

/// A scenario holder running in its own namespace; `stop` ends it and deletes the namespace.
private final class ScenarioRun {
    let namespace: String
    let scriptPath: String
    let child: Child
    let truth: ScenarioTruth

    init(seed: UInt64) throws {
        guard let ip = TestEnv.ip, let python = TestEnv.python3 else { throw SupportError("needs ip and python3") }
        namespace = "pw-diff-\(getpid())-\(seed)"
        ScenarioRun.removeStaleNamespaces(ip)
        let add = runTool(ip, ["netns", "add", namespace])
        guard add.status == 0 else { throw SupportError("ip netns add \(namespace): \(add.stderr)") }
        let up = runTool(ip, ["-n", namespace, "link", "set", "lo", "up"])
        guard up.status == 0 else {
            runTool(ip, ["netns", "delete", namespace])
            throw SupportError("ip -n \(namespace) link set lo up: \(up.stderr)")
        }
        // A file, not `-c`: the processes' command lines (which portwatch reports) stay short.
        scriptPath = "/tmp/\(namespace).py"
        do {
            guard FileManager.default.createFile(atPath: scriptPath, contents: Data(DifferentialScenario.script.utf8)) else {
                throw SupportError("cannot write \(scriptPath)")
            }
            child = try Child.spawn(ip, ["netns", "exec", namespace, python, "-u", scriptPath, "\(seed)"], stdin: .pipe)
        } catch {
            unlink(scriptPath)
            runTool(ip, ["netns", "delete", namespace])
            throw error
        }
        // The readiness line is the truth itself, printed once every socket is in place.
        guard let line = child.readLine(timeout: 60), let truth = ScenarioTruth(line: line) else {
            let err = child.drainStderr()
            child.kill()
            runTool(ip, ["netns", "delete", namespace])
            unlink(scriptPath)
            throw SupportError("scenario \(seed) did not report its truth: \(err)")
        }
        self.truth = truth
    }

    /// Namespaces left by a run that was killed mid-test (pw-diff-PID-SEED: PID is gone).
    static func removeStaleNamespaces(_ ip: String) {
        for line in runTool(ip, ["netns", "list"]).stdout.split(separator: "\n") {
            let name = String(line.split(separator: " ").first ?? "")
            let parts = name.split(separator: "-")
            guard parts.count == 4, parts[0] == "pw", parts[1] == "diff", let pid = Int32(parts[2]), pid != getpid() else { continue }
            if Glibc.kill(pid, 0) != 0 && errno == ESRCH { runTool(ip, ["netns", "delete", name]) }
        }
    }

    func stop() {
        child.closeStdin()
        if child.wait(timeout: 10) == nil { child.kill() }
        if let ip = TestEnv.ip { runTool(ip, ["netns", "delete", namespace]) }
        unlink(scriptPath)
    }
}

@Suite("differential: random scenarios in a fresh namespace against their truth, ss and /proc", .blocking,
       .serialized,
       .enabled(if: TestEnv.canCreateNamespaces && TestEnv.which("ss") != nil, "needs root, ip, ss and python3"))
struct DifferentialTests {
    @Test(arguments: DiffSeeds.chosen)
    func scenario(seed: UInt64) throws {
        let run = try ScenarioRun(seed: seed)
        defer { run.stop() }
        let truth = run.truth
        let ns = run.namespace
        let context = "seed \(seed): \(truth.raw)"
        #expect(!truth.items.isEmpty, "\(context)")

        let portsRun = runPortwatch(["ports", "--json"], timeout: 60, netns: ns)
        #expect(portsRun.status == 0, "\(context)\n\(portsRun)")
        let doc = try #require(portsRun.json(), "\(context)")
        let rows = doc.objects("ports").filter { $0.string("role") == "local" }
        func row(_ proto: String, _ port: Int) -> [String: Any]? {
            rows.first { $0.string("protocol") == proto && $0.int("port") == port }
        }
        let observed = try observe(ns)

        // (a) Against the truth: exactly the held ports are rows; client and gone ports are not.
        let truthKeys = Set(truth.items.map { "\($0.proto)/\($0.port)" })
        let rowKeys = Set(rows.map { "\($0.string("protocol") ?? "?")/\($0.int("port") ?? -1)" })
        #expect(rowKeys == truthKeys, "rows \(rowKeys.sorted()) vs truth \(truthKeys.sorted()); \(context)\n\(portsRun.stdout)")
        for port in truth.clientPorts.union(truth.clientTimeWaitPorts).union(truth.gonePorts) {
            #expect(row("tcp", port) == nil && row("udp", port) == nil, "port \(port) is no row; \(context)")
        }
        for item in truth.items {
            let where_ = "\(item.proto)/\(item.port) (\(item.kind) \(item.family) \(item.address)); \(context)"
            guard let r = row(item.proto, item.port) else { continue }  // reported by the set comparison
            // `addresses` are listening addresses: a bound-only socket's row has none (README).
            let addresses = item.kind == "bound" ? [] : [item.address]
            #expect((r.strings("addresses") ?? []).map(normalized) == addresses, "\(where_)\n\(r)")
            let connections = r.object("connections")
            switch item.kind {
            case "listen":
                #expect(r.bool("listening") == true, "\(where_)")
                #expect(connections?.int("established") == item.established, "\(where_)\n\(r)")
                #expect(connections?.int("time_wait") == item.timeWait, "\(where_)\n\(r)")
                #expect(r.object("accept_queue")?.int("current") == item.queued, "\(where_)\n\(r)")
                #expect(r.object("accept_queue")?.int("max") == item.backlog, "\(where_)\n\(r)")
            case "bound":
                #expect(r.bool("listening") == false, "\(where_)")
                #expect(r.int("bound_sockets") == 1, "\(where_)\n\(r)")
                #expect(connections?.int("total") == 0, "\(where_)\n\(r)")
            default:
                #expect(r.bool("listening") == true, "\(where_)")
                #expect(connections?.int("total") == 0, "\(where_)\n\(r)")
            }
            let pids = Set(r.pids().map(Int.init))
            #expect(pids == item.pids, "owners: \(where_)\n\(r)")

            // The verdict and the holders of each port, one question at a time.
            let spec = item.proto == "udp" ? "\(item.port)/udp" : "\(item.port)"
            let check = runPortwatch(["check", spec, "--json"], timeout: 60, netns: ns)
            let verdict = check.json()?.string("verdict")
            let expected: String
            switch item.kind {
            case "listen": expected = item.established > 0 ? "busy" : "listening"
            case "bound": expected = "busy"
            default: expected = "listening"
            }
            #expect(verdict == expected, "check \(spec): \(where_)\n\(check)")
            let who = runPortwatch(["who", spec, "--json"], timeout: 60, netns: ns)
            #expect(who.status == 0, "who \(spec): \(where_)\n\(who)")
            let whoPids = Set((who.json()?.pids() ?? []).map(Int.init))
            #expect(whoPids == item.pids, "who \(spec): \(where_)\n\(who)")
        }
        for port in truth.gonePorts {
            let check = runPortwatch(["check", "\(port)", "--json"], timeout: 60, netns: ns)
            #expect(check.json()?.string("verdict") == "free", "its holder exited: \(port); \(context)\n\(check)")
        }

        // (b) Against ss: listening ports, queues, established and TIME_WAIT counts, owners.
        let ssListening = observed.ss.filter { ($0.proto == "tcp" && $0.state == "LISTEN") || ($0.proto == "udp" && $0.state == "UNCONN") }
        let ssListeningKeys = Set(ssListening.map { "\($0.proto)/\($0.localPort)" })
        let pwListeningKeys = Set(rows.filter { $0.bool("listening") == true }.map { "\($0.string("protocol") ?? "?")/\($0.int("port") ?? -1)" })
        #expect(pwListeningKeys == ssListeningKeys, "listening: portwatch \(pwListeningKeys.sorted()) vs ss \(ssListeningKeys.sorted()); \(context)")
        for line in ssListening {
            let where_ = "\(line.proto)/\(line.localPort) (ss: \(line.state) \(line.localAddress)); \(context)"
            guard let r = row(line.proto, line.localPort) else { continue }
            if line.proto == "tcp" {
                // ss's Recv-Q and Send-Q of a listener are its accept queue and its limit.
                #expect(r.object("accept_queue")?.int("current") == line.recvQ, "\(where_)\n\(r)")
                #expect(r.object("accept_queue")?.int("max") == line.sendQ, "\(where_)\n\(r)")
                let established = observed.ss.filter { $0.proto == "tcp" && $0.state == "ESTAB" && $0.localPort == line.localPort }.count
                let timeWait = observed.ss.filter { $0.proto == "tcp" && $0.state == "TIME-WAIT" && $0.localPort == line.localPort }.count
                #expect(r.object("connections")?.int("established") == established, "\(where_)\n\(r)")
                #expect(r.object("connections")?.int("time_wait") == timeWait, "\(where_)\n\(r)")
            }
            let item = truth.items.first { $0.proto == line.proto && $0.port == line.localPort }
            let pids = Set(r.pids().map(Int.init))
            if let item {
                #expect(pids == line.pids, "owners, ss \(line.pids): \(where_)\n\(r)")
            }
            // ss writes a dual-stack wildcard `*` and a v6only one `[::]`; portwatch must tell
            // them apart too (in its addresses or a `v6only` field).
            if line.localAddress == "*" || line.localAddress == "[::]" {
                let dual = line.localAddress == "*"
                let addresses = r.strings("addresses") ?? []
                let listenerFlags = r.objects("listeners").compactMap { $0.bool("v6only") }
                let toldApart = addresses.contains(dual ? "*" : "[::]") || listenerFlags == [!dual] || r.bool("v6only") == !dual
                #expect(toldApart, "\(where_)\n\(r)")
            }
        }
        // Every other socket ss lists is a client's end (or its TIME_WAIT): no row of its own.
        let serverPorts = Set(truth.items.map(\.port))
        for line in observed.ss where !serverPorts.contains(line.localPort) {
            let isClient = line.proto == "tcp" && line.peerPort.map { serverPorts.contains($0) } == true
            #expect(isClient, "ss lists \(line.proto) \(line.state) port \(line.localPort) that is neither held nor a client; \(context)")
            #expect(truth.clientPorts.contains(line.localPort) || truth.clientTimeWaitPorts.contains(line.localPort)
                    || line.state != "ESTAB", "an ESTAB client port the scenario did not report: \(line.localPort); \(context)")
        }

        // (c) Against /proc/net and /proc/PID/fd: the same counts and owners, with every fd read.
        // (/proc/net/tcp lists no bound-only socket either: they sit in no hash it walks.)
        for item in truth.items where item.kind != "bound" {
            let where_ = "\(item.proto)/\(item.port); \(context)"
            guard let r = row(item.proto, item.port) else { continue }
            let lines = observed.procNet.filter { $0.proto == item.proto && $0.localPort == item.port }
            if item.proto == "tcp" {
                #expect(r.object("connections")?.int("established") == lines.filter { $0.state == "01" }.count, "\(where_)")
                #expect(r.object("connections")?.int("time_wait") == lines.filter { $0.state == "06" }.count, "\(where_)")
            }
            // Holders of the port's own sockets (the listener or bound socket, and the
            // accepted connections that share its port).
            let holders = lines.reduce(into: Set<Int>()) { $0.formUnion(observed.inodeHolders[$1.inode] ?? []) }
            #expect(holders == item.pids, "/proc/PID/fd holders \(holders.sorted()) vs truth: \(where_)")
        }

        // -4 keeps IPv4 and dual-stack listeners, -6 keeps IPv6 ones (dual-stack included).
        let v4Run = runPortwatch(["ports", "-4", "--json"], timeout: 60, netns: ns)
        let v6Run = runPortwatch(["ports", "-6", "--json"], timeout: 60, netns: ns)
        let v4Ports = Set((v4Run.json()?.objects("ports") ?? []).filter { $0.string("role") == "local" }.compactMap { $0.int("port") })
        let v6Ports = Set((v6Run.json()?.objects("ports") ?? []).filter { $0.string("role") == "local" }.compactMap { $0.int("port") })
        for item in truth.items {
            #expect(v6Ports.contains(item.port) == (item.family != "v4"), "-6 and \(item.proto)/\(item.port) \(item.family); \(context)")
            if item.family == "dual" {
                #expect(v4Ports.contains(item.port), "-4 and dual-stack \(item.proto)/\(item.port); \(context)")
            } else {
                #expect(v4Ports.contains(item.port) == (item.family == "v4"), "-4 and \(item.proto)/\(item.port) \(item.family); \(context)")
            }
        }
    }
}

// What the machine offers the tests: tools, privileges, the portwatch binary.

import Foundation
#if canImport(Glibc)
import Glibc
#endif

// MARK: - Environment and tool checks

enum TestEnv {
    /// Effective uid 0. Namespace tests need it (and CAP_NET_ADMIN, which `canCreateNamespaces` probes).
    static let isRoot: Bool = geteuid() == 0

    /// The first executable named `tool` on PATH or in the sbin directories (`ip`, `nft` live there).
    static func which(_ tool: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
        var dirs = path.split(separator: ":").map(String.init)
        dirs += ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        for dir in dirs where !dir.isEmpty {
            let candidate = dir + "/" + tool
            if access(candidate, X_OK) == 0 { return candidate }
        }
        return nil
    }

    /// A real python3 interpreter. /usr/bin/python3 first: version-manager shims (pyenv) work
    /// but take a shell and a second or so to start.
    static let python3: String? = {
        if access("/usr/bin/python3", X_OK) == 0 { return "/usr/bin/python3" }
        return which("python3")
    }()

    static let ip: String? = which("ip")
    static let nft: String? = which("nft")

    static var hasPython: Bool { python3 != nil }

    /// Root, `ip` and `nft` present, and a namespace can really be created (a root user in an
    /// unprivileged container cannot). Probed once.
    static let canCreateNamespaces: Bool = {
        guard isRoot, let ip, nft != nil, python3 != nil else { return false }
        // Namespaces left by an earlier run that was killed mid-test (pw-PID-...: PID is gone).
        for line in runTool(ip, ["netns", "list"], timeout: 5).stdout.split(separator: "\n") {
            let name = String(line.split(separator: " ").first ?? "")
            let parts = name.split(separator: "-")
            guard parts.count == 3, parts[0] == "pw", let pid = Int32(parts[1]), pid != getpid() else { continue }
            if Glibc.kill(pid, 0) != 0 && errno == ESRCH { _ = runTool(ip, ["netns", "delete", name], timeout: 5) }
        }
        let name = "pw-\(getpid())-probe"
        let add = runTool(ip, ["netns", "add", name], timeout: 5)
        defer { _ = runTool(ip, ["netns", "delete", name], timeout: 5) }
        guard add.status == 0 else { return false }
        let veth = runTool(ip, ["-n", name, "link", "add", "pwa", "type", "veth", "peer", "name", "pwb"], timeout: 5)
        let nftOK = runTool(ip, ["netns", "exec", name, nft!, "list", "ruleset"], timeout: 5)
        return veth.status == 0 && nftOK.status == 0
    }()

    /// The `portwatch` binary built next to this test bundle (PORTWATCH_BIN overrides).
    static let portwatchPath: String = {
        if let forced = ProcessInfo.processInfo.environment["PORTWATCH_BIN"], !forced.isEmpty { return forced }
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        let exe = n > 0 ? String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) : ""
        var dir = (exe as NSString).deletingLastPathComponent
        // On some toolchains the runner is a helper outside the build directory; the bundle
        // path is then in the arguments.
        if access(dir + "/portwatch", X_OK) != 0 {
            for arg in CommandLine.arguments where arg.hasSuffix(".xctest") {
                let candidate = (arg as NSString).deletingLastPathComponent
                if access(candidate + "/portwatch", X_OK) == 0 { dir = candidate }
            }
        }
        return dir + "/portwatch"
    }()

    /// This process's short name as /proc shows it (what `portwatch` reports as `name`).
    static let ownComm: String = {
        (try? String(contentsOfFile: "/proc/self/comm", encoding: .utf8))?
            .trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
    }()
}

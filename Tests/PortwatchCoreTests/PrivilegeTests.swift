import Foundation
import Glibc
import Testing
import PortwatchTestSupport
@testable import PortwatchCore

// portwatch run as `nobody` (setpriv drops uid, gid and groups) against a listener this root
// test process holds: what a non-root user is told, and with which exit code.

/// The portwatch binary built beside this test bundle (`swift build --build-tests` builds both).
private func builtPortwatch() throws -> String {
    let exe = try #require(readlinkString("/proc/self/exe"))
    var dir = exe
    while let slash = dir.lastIndex(of: "/"), !FileManager.default.isExecutableFile(atPath: dir + "/portwatch") {
        dir = String(dir[..<slash])
        if dir.isEmpty { break }
    }
    let path = dir + "/portwatch"
    try #require(FileManager.default.isExecutableFile(atPath: path), "no portwatch binary near \(exe)")
    return path
}

private func readlinkString(_ path: String) -> String? {
    var buffer = [CChar](repeating: 0, count: 4096)
    let n = readlink(path, &buffer, buffer.count - 1)
    return n > 0 ? String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) : nil
}

private struct Run {
    var status: Int32
    var stdout: String
    var stderr: String
}

/// Runs the binary as nobody (or as ourselves with `asNobody: false`), bounded to 30 s.
private func run(_ binary: String, _ arguments: [String], asNobody: Bool = true, environment: [String: String] = [:]) throws -> Run {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/timeout")
    let drop = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
    process.arguments = ["30"] + (asNobody ? drop : []) + [binary] + arguments
    var env = ProcessInfo.processInfo.environment
    env.removeValue(forKey: "PORTWATCH_SOCKET_SOURCE")
    env.merge(environment) { $1 }
    process.environment = env
    // Files, not pipes: nothing to drain while waiting, and nobody may write to them through
    // the inherited descriptors.
    let base = FileManager.default.temporaryDirectory.appendingPathComponent("portwatch-nobody-\(UUID().uuidString)")
    let outURL = base.appendingPathExtension("out"), errURL = base.appendingPathExtension("err")
    FileManager.default.createFile(atPath: outURL.path, contents: nil)
    FileManager.default.createFile(atPath: errURL.path, contents: nil)
    defer {
        try? FileManager.default.removeItem(at: outURL)
        try? FileManager.default.removeItem(at: errURL)
    }
    let out = try FileHandle(forWritingTo: outURL), err = try FileHandle(forWritingTo: errURL)
    process.standardOutput = out
    process.standardError = err
    try process.run()
    process.waitUntilExit()
    try out.close()
    try err.close()
    return Run(status: process.terminationStatus, stdout: try String(contentsOf: outURL, encoding: .utf8),
               stderr: try String(contentsOf: errURL, encoding: .utf8))
}

private func listenOnLoopback() throws -> (fd: Int32, port: UInt16) {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    try #require(fd >= 0)
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let ok = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            bind(fd, $0, length) == 0 && listen(fd, 8) == 0 && getsockname(fd, $0, &length) == 0
        }
    }
    try #require(ok)
    return (fd, UInt16(bigEndian: address.sin_port))
}

@Suite(.blocking, .enabled(if: geteuid() == 0, "dropping privileges needs root"),
       .enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv"), "needs setpriv (util-linux)"))
struct NonRootTests {
    /// `who` and `kill` of a port whose holder nobody cannot see: exit 2 and the reason on one
    /// stderr line, not "nothing holds"; `ports` still shows the row, with the reason as a note.
    @Test func hiddenHolderIsAPermissionProblem() throws {
        let binary = try builtPortwatch()
        let (fd, port) = try listenOnLoopback()
        defer { close(fd) }

        let who = try run(binary, ["who", String(port)])
        #expect(who.status == 2)
        let whoLines = who.stderr.split(separator: "\n")
        #expect(whoLines.count == 1)
        #expect(whoLines.first?.hasPrefix("portwatch: ") == true)
        #expect(who.stderr.contains("needs root or CAP_SYS_PTRACE"))
        #expect(!who.stdout.contains("nothing holds"))

        let kill = try run(binary, ["kill", String(port), "--yes"])
        #expect(kill.status == 2)
        #expect(kill.stderr.hasPrefix("portwatch: "))
        #expect(kill.stderr.contains("needs root or CAP_SYS_PTRACE"))

        // Notes accumulate: the forced fallback's note and the hidden owners' note, both.
        let ports = try run(binary, ["ports", String(port), "--json"], environment: ["PORTWATCH_SOCKET_SOURCE": "procfs"])
        #expect(ports.status == 0)
        let doc = try #require(try JSONSerialization.jsonObject(with: Data(ports.stdout.utf8)) as? [String: Any])
        let rows = try #require(doc["ports"] as? [[String: Any]])
        let row = try #require(rows.first { ($0["port"] as? Int) == Int(port) })
        #expect((row["processes"] as? [Any])?.isEmpty == true)
        let notes = (doc["notes"] as? [String]) ?? []
        #expect(notes.contains { $0.contains("needs root or CAP_SYS_PTRACE") })
        #expect(notes.contains { $0.contains("/proc/net") })

        // Root sees the holder, and gets no advice to become root.
        let asRoot = try run(binary, ["who", String(port)], asNobody: false)
        #expect(asRoot.status == 0)
        #expect(asRoot.stdout.contains(String(getpid())))
        #expect(!asRoot.stderr.contains("needs root"))
    }

    /// `free` over privileged ports that nobody may not bind: exit 2 naming the cause.
    @Test func privilegedRangeIsDeniedNotTaken() throws {
        let binary = try builtPortwatch()
        let start = unprivilegedPortStart() ?? 1024
        let free = try run(binary, ["free", "--range", "1-1023"])
        if start > 1023 {
            #expect(free.status == 2)
            #expect(free.stderr.hasPrefix("portwatch: "))
            #expect(free.stderr.contains("CAP_NET_BIND_SERVICE"))
            #expect(free.stdout.isEmpty)
        } else {
            #expect(free.status == 0)
        }
        // Above the privileged range nobody finds a port as root does.
        let high = try run(binary, ["free", "--range", "40000-40999"])
        #expect(high.status == 0)
        #expect(UInt16(high.stdout.split(separator: "\n").first ?? "") != nil)
    }

    /// `ports` as nobody exits 0 with the row: what cannot be seen is a note, not a failure.
    @Test func portsAsNobodyShowsTheRowWithANote() throws {
        let binary = try builtPortwatch()
        let (fd, port) = try listenOnLoopback()
        defer { close(fd) }
        let ports = try run(binary, ["ports", String(port)])
        #expect(ports.status == 0)
        #expect(ports.stdout.contains(String(port)))
        #expect(ports.stdout.contains("unknown"))
        #expect(ports.stderr.contains("needs root or CAP_SYS_PTRACE"))
    }
}

import Foundation
import Testing
import PortwatchTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// Collects a running child's stderr lines (the daemon logs there) as they arrive.
final class StderrLines: @unchecked Sendable {
    private let child: Child
    private var buffer: [UInt8] = []
    private(set) var lines: [String] = []

    init(_ child: Child) { self.child = child }

    /// Reads what arrives within `timeout` seconds into `lines`: bytes read, 0 when nothing
    /// came, -1 at EOF.
    @discardableResult
    private func pump(timeout: Double) -> Int {
        let fd = child.stderrFD
        guard fd >= 0 else { return -1 }
        var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let n = Glibc.poll(&pfd, 1, Int32(max(0, timeout * 1000)))
        if n <= 0 { return 0 }
        var chunk = [UInt8](repeating: 0, count: 65536)
        let got = read(fd, &chunk, chunk.count)
        if got <= 0 { return -1 }
        buffer.append(contentsOf: chunk[0..<got])
        while let nl = buffer.firstIndex(of: UInt8(ascii: "\n")) {
            lines.append(String(decoding: buffer[..<nl], as: UTF8.self))
            buffer.removeSubrange(...nl)
        }
        return got
    }

    /// Reads everything written so far; returns the number of lines then.
    func drain() -> Int {
        for _ in 0..<10_000 where pump(timeout: 0) > 0 {}
        return lines.count
    }

    /// Index of the first line from `from` on that satisfies `match`, waiting up to `timeout`.
    func waitFor(from: Int = 0, timeout: Double, _ match: (String) -> Bool) -> Int? {
        let deadline = monotonic() + timeout
        for _ in 0..<100_000 {
            if let i = lines.indices.dropFirst(from).first(where: { match(lines[$0]) }) { return i }
            let remaining = deadline - monotonic()
            if remaining <= 0 || pump(timeout: min(remaining, 0.2)) < 0 {
                return lines.indices.dropFirst(from).first { match(lines[$0]) }
            }
        }
        return nil
    }

    var text: String { lines.joined(separator: "\n") }
}

/// A private directory under /tmp, removed by `remove()`.
func makeTemporaryDirectory(_ tag: String) throws -> String {
    var template = Array("/tmp/pw-\(tag)-\(getpid())-XXXXXX".utf8CString)
    guard let p = mkdtemp(&template) else { throw SupportError.errno("mkdtemp") }
    return String(cString: p)
}

func removeTree(_ path: String) { try? FileManager.default.removeItem(atPath: path) }

@Suite(.serialized, .blocking) struct DaemonCLITests {
    /// The per-sample debug line of the daemon's log sink.
    static func isSampleLine(_ line: String) -> Bool { line.contains("] sample: ") }

    /// Starts `portwatch daemon` with debug logs and waits for its readiness line.
    static func startDaemon(_ arguments: [String], directory: String) throws -> (PortwatchRun, StderrLines) {
        let http = try Net.freePorts(1)[0]
        let run = try startPortwatch(["daemon", "--listen", "127.0.0.1:\(http)", "--db", directory + "/history.sqlite"] + arguments,
                                     environment: ["PORTWATCH_LOG_LEVEL": "debug"])
        let log = StderrLines(run.child)
        return (run, log)
    }

    @Test(arguments: [
        ["--interval", "soon"], ["--interval", "10ms"], ["--interval", "2h"], ["--listen", "nowhere"],
        ["--listen", "127.0.0.1:70000"], ["--listen", "0.0.0.0:9910"], ["--listen", "[::]:9910"],
        ["--config", "/nonexistent/portwatch.yml"], ["--listen", "0.0.0.0:9910", "--token-file", "/nonexistent/token"],
        ["--bogus"], ["--interval"],
    ])
    func badFlagsExitTwoWithOneLine(arguments: [String]) {
        let r = runPortwatch(["daemon"] + arguments, timeout: 20)
        #expect(r.status == 2, "\(r)")
        #expect(r.stderrLines.count == 1, "\(r)")
        #expect(r.stderr.hasPrefix("portwatch: "), "\(r)")
        #expect(r.stdout.isEmpty, "\(r)")
    }

    @Test func aNonLoopbackListenWithoutATokenSaysWhy() {
        let r = runPortwatch(["daemon", "--listen", "0.0.0.0:9910"], timeout: 20)
        #expect(r.status == 2)
        #expect(r.stderr.contains("token"), "\(r)")
    }

    @Test func aConfigWithProblemsRefusesToStartWithALinePerProblem() throws {
        let dir = try makeTemporaryDirectory("badconfig")
        defer { removeTree(dir) }
        let config = dir + "/portwatch.yml"
        try "intervall: 5s\nrules:\n  - {name: a, metric: conns, above: 1}\n".write(toFile: config, atomically: true, encoding: .utf8)
        let r = runPortwatch(["daemon", "--config", config, "--db", dir + "/history.sqlite"], timeout: 20)
        #expect(r.status == 2, "\(r)")
        #expect(r.stderrLines.count == 2, "\(r)")
        #expect(r.stderrLines.first?.hasPrefix("portwatch: \(config):1:1: unknown key 'intervall'") == true, "\(r)")
        #expect(r.stderrLines.last?.hasPrefix("portwatch: \(config):3:") == true, "\(r)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/history.sqlite"), "started despite the bad config")
    }

    @Test func anHTTPPortInUseStopsTheDaemonWithExitTwo() throws {
        let dir = try makeTemporaryDirectory("portinuse")
        defer { removeTree(dir) }
        let taken = try Net.tcpListener("127.0.0.1")
        defer { taken.close() }
        let r = runPortwatch(["daemon", "--listen", "127.0.0.1:\(taken.port)", "--db", dir + "/history.sqlite"], timeout: 30)
        #expect(r.status == 2, "\(r)")
        #expect(r.stderrLines.last?.hasPrefix("portwatch: daemon stopped: ") == true, "\(r)")
        #expect(!r.stderr.contains("daemon ready"), "\(r)")
    }

    @Test func theDaemonSeesANewListenerAndStopsOnSIGTERM() throws {
        let dir = try makeTemporaryDirectory("daemon")
        defer { removeTree(dir) }
        let (run, log) = try Self.startDaemon(["--interval", "200ms"], directory: dir)
        defer { run.child.kill() }
        let ready = log.waitFor(timeout: 60) { $0.hasPrefix("portwatch: daemon ready: sampling every 200ms, ") && $0.contains(" ports, http://127.0.0.1:") }
        try #require(ready != nil, "no readiness line: \(log.text)")

        let port = try Net.freePorts(1)[0]
        // Every line logged before the listen() is read before it: those samples do not count.
        let mark = log.drain()
        let listener = try Net.tcpListener("127.0.0.1", port: port)
        defer { listener.close() }
        let seen = log.waitFor(from: mark, timeout: 30) { $0.contains("tcp/\(listener.port) listening on 127.0.0.1") }
        try #require(seen != nil, "listener never logged: \(log.text.suffix(3000))")
        // Within two samples of the listen(): counted in samples, not seconds.
        let samples = log.lines[mark...seen!].filter(Self.isSampleLine).count
        #expect(samples >= 1 && samples <= 2, "\(log.lines[mark...seen!])")

        listener.close()
        let gone = log.waitFor(from: seen! + 1, timeout: 30) { $0.contains("tcp/\(listener.port) stopped listening") }
        #expect(gone != nil, "\(log.text.suffix(3000))")

        #expect(Glibc.kill(run.child.pid, SIGTERM) == 0)
        let status = run.child.wait(timeout: 30)
        #expect(status != nil, "the daemon did not stop on SIGTERM")
        #expect(exitCode(status) == 0, "\(log.text.suffix(2000))")
    }

    @Test func sighupWithABrokenConfigKeepsTheDaemonRunningAndSIGINTStopsIt() throws {
        let dir = try makeTemporaryDirectory("reload")
        defer { removeTree(dir) }
        let config = dir + "/portwatch.yml"
        try "interval: 200ms\n".write(toFile: config, atomically: true, encoding: .utf8)
        let (run, log) = try Self.startDaemon(["--config", config], directory: dir)
        defer { run.child.kill() }
        try #require(log.waitFor(timeout: 60) { $0.hasPrefix("portwatch: daemon ready: sampling every 200ms") } != nil, "\(log.text)")

        try "interval: [200ms\n".write(toFile: config, atomically: true, encoding: .utf8)
        var mark = log.drain()
        #expect(Glibc.kill(run.child.pid, SIGHUP) == 0)
        let failed = log.waitFor(from: mark, timeout: 30) { $0.contains("reload failed, keeping the running config") && $0.contains(config) }
        try #require(failed != nil, "\(log.text.suffix(3000))")
        // Still alive and sampling after the bad reload.
        #expect(log.waitFor(from: failed! + 1, timeout: 30, Self.isSampleLine) != nil)
        #expect(!run.child.reap())

        try "interval: 300ms\nports:\n  - {port: 23, expect: closed}\n".write(toFile: config, atomically: true, encoding: .utf8)
        mark = log.drain()
        #expect(Glibc.kill(run.child.pid, SIGHUP) == 0)
        #expect(log.waitFor(from: mark, timeout: 30) { $0.contains("config reloaded: sampling every 300ms, 1 configured ports") } != nil,
                "\(log.text.suffix(3000))")

        // SIGINT (Ctrl-C) stops it gracefully too.
        #expect(Glibc.kill(run.child.pid, SIGINT) == 0)
        let status = run.child.wait(timeout: 30)
        #expect(exitCode(status) == 0)
    }

    /// Unprivileged (another user, no capability): the daemon says once what it cannot see and
    /// samples on.
    @Test(.enabled(if: TestEnv.isRoot && TestEnv.which("setpriv") != nil, "needs root and setpriv (util-linux) to drop privileges"))
    func withoutPrivilegesItSaysOnceWhatItCannotSeeAndGoesOn() throws {
        let dir = try makeTemporaryDirectory("unprivileged")
        defer { removeTree(dir) }
        chmod(dir, 0o777)
        let http = try Net.freePorts(1)[0]
        let setpriv = TestEnv.which("setpriv")!
        let child = try Child.spawn(setpriv, [
            "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all",
            TestEnv.portwatchPath, "daemon", "--interval", "200ms", "--listen", "127.0.0.1:\(http)",
            "--db", dir + "/history.sqlite",
        ], environment: portwatchEnvironment(["PORTWATCH_LOG_LEVEL": "debug"]))
        defer { child.kill() }
        let log = StderrLines(child)
        let ready = log.waitFor(timeout: 60) { $0.hasPrefix("portwatch: daemon ready: ") }
        try #require(ready != nil, "\(log.text)")
        // Three more samples, then count the warnings.
        var from = ready! + 1
        for _ in 0..<3 {
            guard let i = log.waitFor(from: from, timeout: 30, Self.isSampleLine) else { break }
            from = i + 1
        }
        let hidden = log.lines.filter { $0.contains(" warning ") && $0.contains("could not be inspected") }
        #expect(hidden.count == 1, "\(log.text)")
        #expect(log.lines.filter(Self.isSampleLine).count >= 4, "\(log.text)")
        #expect(Glibc.kill(child.pid, SIGTERM) == 0)
        #expect(exitCode(child.wait(timeout: 30)) == 0)
    }
}

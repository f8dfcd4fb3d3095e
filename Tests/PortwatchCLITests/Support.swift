// Helpers for the CLI integration tests: run the built `portwatch` binary, hold real sockets,
// spawn python3 children that hold sockets in another process, and build private network
// namespaces with a veth pair for remote checks.
//
// Rules every helper keeps, so tests can run in parallel with each other and with other suites:
// - every descriptor the test process opens is close-on-exec, and children are spawned with
//   every descriptor above stderr closed, so no child ever inherits another test's socket;
// - ports come from the kernel (bind to port 0) or from `portwatch free`, never hard-coded
//   (except inside namespaces the tests create, which nothing else shares);
// - every wait is bounded in time, every loop in count;
// - children are killed and reaped, namespaces deleted, by the caller's `defer`.

import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

// MARK: - Errors and time

/// A helper failed: the message says what and why (errno text included).
struct SupportError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
    static func errno(_ what: String, _ code: Int32 = Glibc.errno) -> SupportError {
        SupportError("\(what): \(String(cString: strerror(code))) (errno \(code))")
    }
}

/// Monotonic seconds.
func monotonic() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

func sleepSeconds(_ seconds: Double) {
    if seconds > 0 { usleep(UInt32(seconds * 1_000_000)) }
}

/// Polls `condition` every `interval` until it holds or `timeout` passes; returns its last value.
@discardableResult
func poll(timeout: Double, interval: Double = 0.05, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = monotonic() + timeout
    for _ in 0..<10_000 {
        if try condition() { return true }
        if monotonic() >= deadline { return false }
        sleepSeconds(min(interval, max(0, deadline - monotonic())))
    }
    return false
}

// MARK: - GNU extensions the Glibc module does not export

/// pipe2, accept4 and posix_spawn_file_actions_addclosefrom_np are _GNU_SOURCE functions that
/// Swift's Glibc module leaves out; they are looked up once with dlsym.
private enum GNU {
    typealias Pipe2 = @convention(c) (UnsafeMutablePointer<Int32>, Int32) -> Int32
    typealias Accept4 = @convention(c) (Int32, UnsafeMutablePointer<sockaddr>?, UnsafeMutablePointer<socklen_t>?, Int32) -> Int32
    typealias CloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32

    static func symbol<T>(_ name: String, as type: T.Type) -> T? {
        guard let handle = dlopen(nil, RTLD_NOW), let sym = dlsym(handle, name) else { return nil }
        return unsafeBitCast(sym, to: type)
    }

    nonisolated(unsafe) static let pipe2Function = symbol("pipe2", as: Pipe2.self)
    nonisolated(unsafe) static let accept4Function = symbol("accept4", as: Accept4.self)
    nonisolated(unsafe) static let closeFromFunction = symbol("posix_spawn_file_actions_addclosefrom_np", as: CloseFrom.self)
}

/// pipe2(2); falls back to pipe + FD_CLOEXEC where the symbol is missing.
func pipe2(_ fds: UnsafeMutablePointer<Int32>, _ flags: Int32) -> Int32 {
    if let f = GNU.pipe2Function { return f(fds, flags) }
    guard pipe(fds) == 0 else { return -1 }
    if flags & O_CLOEXEC != 0 {
        _ = fcntl(fds[0], F_SETFD, FD_CLOEXEC)
        _ = fcntl(fds[1], F_SETFD, FD_CLOEXEC)
    }
    return 0
}

/// accept4(2) with flags; falls back to accept + FD_CLOEXEC.
func accept4(_ fd: Int32, _ addr: UnsafeMutablePointer<sockaddr>?, _ len: UnsafeMutablePointer<socklen_t>?, _ flags: Int32) -> Int32 {
    if let f = GNU.accept4Function { return f(fd, addr, len, flags) }
    let s = accept(fd, addr, len)
    if s >= 0 && flags & Int32(SOCK_CLOEXEC.rawValue) != 0 { _ = fcntl(s, F_SETFD, FD_CLOEXEC) }
    return s
}

/// Closes every descriptor from `low` up in the child (glibc 2.34+); a no-op where missing
/// (every descriptor the tests open is close-on-exec anyway).
func posix_spawn_file_actions_addclosefrom_np(_ actions: UnsafeMutablePointer<posix_spawn_file_actions_t>, _ low: Int32) {
    if let f = GNU.closeFromFunction { _ = f(actions, low) }
}

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

// MARK: - Child processes

/// A spawned child with pipes on its standard streams.
final class Child: @unchecked Sendable {
    let pid: pid_t
    /// Read ends of the child's stdout and stderr (-1 once closed).
    private(set) var stdoutFD: Int32
    private(set) var stderrFD: Int32
    /// Write end of the child's stdin when it was a pipe (-1 otherwise). Closing it tells
    /// cooperative children (the python helpers) to exit.
    private(set) var stdinFD: Int32
    private(set) var exitStatus: Int32? = nil
    private var lineBuffer: [UInt8] = []
    private let lock = NSLock()

    init(pid: pid_t, stdoutFD: Int32, stderrFD: Int32, stdinFD: Int32) {
        self.pid = pid
        self.stdoutFD = stdoutFD
        self.stderrFD = stderrFD
        self.stdinFD = stdinFD
    }

    deinit { kill() }

    enum Input { case devNull, pipe }

    /// posix_spawn `path` with `arguments`; `environment` nil inherits ours. The child gets
    /// fresh pipes on stdout/stderr, /dev/null or a pipe on stdin, default signal handling,
    /// an empty signal mask, and nothing else open.
    static func spawn(_ path: String, _ arguments: [String], environment: [String: String]? = nil,
                      stdin: Input = .devNull) throws -> Child {
        var outPipe: [Int32] = [-1, -1]
        var errPipe: [Int32] = [-1, -1]
        var inPipe: [Int32] = [-1, -1]
        guard pipe2(&outPipe, O_CLOEXEC) == 0 else { throw SupportError.errno("pipe2") }
        guard pipe2(&errPipe, O_CLOEXEC) == 0 else {
            close(outPipe[0]); close(outPipe[1]); throw SupportError.errno("pipe2")
        }
        if stdin == .pipe, pipe2(&inPipe, O_CLOEXEC) != 0 {
            for fd in outPipe + errPipe { close(fd) }
            throw SupportError.errno("pipe2")
        }
        defer {
            close(outPipe[1]); close(errPipe[1])
            if inPipe[0] >= 0 { close(inPipe[0]) }
        }

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        if stdin == .pipe {
            posix_spawn_file_actions_adddup2(&actions, inPipe[0], 0)
        } else {
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        }
        posix_spawn_file_actions_adddup2(&actions, outPipe[1], 1)
        posix_spawn_file_actions_adddup2(&actions, errPipe[1], 2)
        posix_spawn_file_actions_addclosefrom_np(&actions, 3)

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for sig in [SIGPIPE, SIGTERM, SIGINT, SIGHUP, SIGCHLD] { sigaddset(&defaults, sig) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attributes, &empty)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))

        let env = environment ?? ProcessInfo.processInfo.environment
        let argv = ([path] + arguments).map { strdup($0) } + [nil]
        let envp = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            for p in argv { free(p) }
            for p in envp { free(p) }
        }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, path, &actions, &attributes, argv, envp)
        guard rc == 0 else {
            close(outPipe[0]); close(errPipe[0])
            if inPipe[1] >= 0 { close(inPipe[1]) }
            throw SupportError.errno("posix_spawn \(path)", rc)
        }
        return Child(pid: pid, stdoutFD: outPipe[0], stderrFD: errPipe[0], stdinFD: inPipe[1])
    }

    /// Closes our end of the child's stdin.
    func closeStdin() {
        lock.lock(); defer { lock.unlock() }
        if stdinFD >= 0 { close(stdinFD); stdinFD = -1 }
    }

    /// One line from the child's stdout (without the newline), or nil on EOF or timeout.
    func readLine(timeout: Double) -> String? {
        lock.lock(); defer { lock.unlock() }
        let deadline = monotonic() + timeout
        var chunk = [UInt8](repeating: 0, count: 4096)
        for _ in 0..<100_000 {
            if let nl = lineBuffer.firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: lineBuffer[..<nl], as: UTF8.self)
                lineBuffer.removeSubrange(...nl)
                return line
            }
            let remaining = deadline - monotonic()
            guard remaining > 0, stdoutFD >= 0 else { return nil }
            var pfd = pollfd(fd: stdoutFD, events: Int16(POLLIN), revents: 0)
            let n = Glibc.poll(&pfd, 1, Int32(max(1, remaining * 1000)))
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return nil }
            let got = read(stdoutFD, &chunk, chunk.count)
            if got < 0 && errno == EINTR { continue }
            if got <= 0 { return nil }
            lineBuffer.append(contentsOf: chunk[0..<got])
        }
        return nil
    }

    /// Whatever the child wrote to stderr so far (non-blocking), for failure messages.
    func drainStderr() -> String {
        lock.lock(); defer { lock.unlock() }
        guard stderrFD >= 0 else { return "" }
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        for _ in 0..<64 {
            let got = recvOrRead(stderrFD, &chunk)
            if got <= 0 { break }
            out.append(contentsOf: chunk[0..<got])
        }
        return String(decoding: out, as: UTF8.self)
    }

    private func recvOrRead(_ fd: Int32, _ chunk: inout [UInt8]) -> Int {
        var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard Glibc.poll(&pfd, 1, 0) == 1 else { return 0 }
        return read(fd, &chunk, chunk.count)
    }

    /// Reaps the child if it has exited (WNOHANG); true once it has.
    @discardableResult
    func reap() -> Bool {
        lock.lock(); defer { lock.unlock() }
        if exitStatus != nil { return true }
        var status: Int32 = 0
        let rc = waitpid(pid, &status, WNOHANG)
        if rc == pid {
            exitStatus = status
            return true
        }
        // ECHILD: someone else reaped it; treat as gone.
        if rc < 0 && errno == ECHILD { exitStatus = -1; return true }
        return false
    }

    /// Waits up to `timeout` for the child to exit; returns its raw wait status, or nil.
    func wait(timeout: Double) -> Int32? {
        poll(timeout: timeout, interval: 0.01) { reap() }
        lock.lock(); defer { lock.unlock() }
        return exitStatus
    }

    /// SIGKILL (if still running) and reap; closes our pipe ends. Safe to call twice.
    func kill() {
        if !reap() {
            Glibc.kill(pid, SIGKILL)
            _ = wait(timeout: 5)
        }
        lock.lock(); defer { lock.unlock() }
        for fd in [stdoutFD, stderrFD, stdinFD] where fd >= 0 { close(fd) }
        stdoutFD = -1; stderrFD = -1; stdinFD = -1
    }

    /// Reads stdout and stderr to EOF and waits for exit, all within `timeout`; kills the
    /// child when the time is up. Returns (stdout, stderr, wait status or nil on timeout).
    func collect(timeout: Double) -> (stdout: [UInt8], stderr: [UInt8], status: Int32?) {
        let deadline = monotonic() + timeout
        var out: [UInt8] = []
        var err: [UInt8] = []
        lock.lock()
        out = lineBuffer
        lineBuffer = []
        var fds = [stdoutFD, stderrFD]
        lock.unlock()
        var chunk = [UInt8](repeating: 0, count: 65536)
        var timedOut = false
        for _ in 0..<1_000_000 {
            if !fds.contains(where: { $0 >= 0 }) { break }
            let remaining = deadline - monotonic()
            if remaining <= 0 { timedOut = true; break }
            var pfds = fds.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
            let n = Glibc.poll(&pfds, nfds_t(pfds.count), Int32(max(1, min(remaining, 0.2) * 1000)))
            if n < 0 && errno != EINTR { break }
            for i in pfds.indices where fds[i] >= 0 && pfds[i].revents != 0 {
                let got = read(fds[i], &chunk, chunk.count)
                if got > 0 {
                    if i == 0 { out.append(contentsOf: chunk[0..<got]) } else { err.append(contentsOf: chunk[0..<got]) }
                } else if got == 0 || (errno != EINTR && errno != EAGAIN) {
                    fds[i] = -1
                }
            }
        }
        if timedOut {
            kill()
            return (out, err, nil)
        }
        let status = wait(timeout: max(0.1, deadline - monotonic()))
        if status == nil {
            kill()
            return (out, err, nil)
        }
        kill()  // closes the pipes
        return (out, err, status)
    }
}

/// Exit code from a wait status: the code, 128+signal when killed, -1 when unknown.
func exitCode(_ status: Int32?) -> Int32 {
    guard let status, status >= 0 else { return -1 }
    let signal = status & 0x7f
    if signal == 0 { return (status >> 8) & 0xff }
    return 128 + signal
}

/// Runs any tool to completion (used for `ip`, `nft`): exit code and both outputs.
@discardableResult
func runTool(_ path: String, _ arguments: [String], timeout: Double = 10) -> (status: Int32, stdout: String, stderr: String) {
    do {
        let child = try Child.spawn(path, arguments)
        let r = child.collect(timeout: timeout)
        return (exitCode(r.status), String(decoding: r.stdout, as: UTF8.self), String(decoding: r.stderr, as: UTF8.self))
    } catch {
        return (-1, "", "\(error)")
    }
}

// MARK: - Running portwatch

/// What one run of `portwatch` produced.
struct PortwatchResult: CustomStringConvertible {
    var arguments: [String]
    var stdout: String
    var stderr: String
    /// The exit code; -1 when it had to be killed at the timeout.
    var status: Int32
    var timedOut: Bool
    /// Wall time of the run.
    var seconds: Double

    /// stdout parsed as one JSON object; nil (and a recorded issue) when it is not one.
    func json(sourceLocation: SourceLocation = #_sourceLocation) -> [String: Any]? {
        guard let data = stdout.data(using: .utf8),
              let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            Issue.record("not a JSON object from portwatch \(arguments.joined(separator: " ")): \(self)",
                         sourceLocation: sourceLocation)
            return nil
        }
        return object
    }

    /// The stderr lines (a trailing newline does not make an extra empty line).
    var stderrLines: [Substring] {
        var lines = stderr.split(separator: "\n", omittingEmptySubsequences: false)
        if lines.last == "" { lines.removeLast() }
        return lines
    }

    var description: String {
        "exit \(status)\(timedOut ? " (timed out)" : "") after \(String(format: "%.2f", seconds))s; "
            + "stdout: \(stdout.prefix(2000)) stderr: \(stderr.prefix(2000))"
    }
}

/// The environment portwatch runs with: ours, minus the test-only switches, plus `extra`.
func portwatchEnvironment(_ extra: [String: String] = [:]) -> [String: String] {
    var env = ProcessInfo.processInfo.environment
    env.removeValue(forKey: "PORTWATCH_SOCKET_SOURCE")
    env.removeValue(forKey: "PORTWATCH_RECORD_NETLINK")
    env["NO_COLOR"] = "1"
    for (k, v) in extra { env[k] = v }
    return env
}

/// A portwatch run in progress (for `wait`, where the test acts while it runs).
struct PortwatchRun: @unchecked Sendable {
    let child: Child
    let arguments: [String]
    let started: Double

    func finish(timeout: Double = 15) -> PortwatchResult {
        let r = child.collect(timeout: timeout)
        return PortwatchResult(arguments: arguments, stdout: String(decoding: r.stdout, as: UTF8.self),
                               stderr: String(decoding: r.stderr, as: UTF8.self),
                               status: r.status == nil ? -1 : exitCode(r.status),
                               timedOut: r.status == nil, seconds: monotonic() - started)
    }
}

/// Starts `portwatch ARGS` (inside network namespace `netns` when given, through `ip netns exec`).
func startPortwatch(_ arguments: [String], environment: [String: String] = [:],
                    netns: String? = nil) throws -> PortwatchRun {
    let started = monotonic()
    let child: Child
    if let netns {
        guard let ip = TestEnv.ip else { throw SupportError("ip not found") }
        child = try Child.spawn(ip, ["netns", "exec", netns, TestEnv.portwatchPath] + arguments,
                                environment: portwatchEnvironment(environment))
    } else {
        child = try Child.spawn(TestEnv.portwatchPath, arguments, environment: portwatchEnvironment(environment))
    }
    return PortwatchRun(child: child, arguments: arguments, started: started)
}

/// Runs `portwatch ARGS` to completion (killed after `timeout`), stdin /dev/null.
func runPortwatch(_ arguments: [String], timeout: Double = 15, environment: [String: String] = [:],
                  netns: String? = nil) -> PortwatchResult {
    do {
        return try startPortwatch(arguments, environment: environment, netns: netns).finish(timeout: timeout)
    } catch {
        return PortwatchResult(arguments: arguments, stdout: "", stderr: "spawn failed: \(error)",
                               status: -1, timedOut: false, seconds: 0)
    }
}

// MARK: - JSON access

extension Dictionary where Key == String, Value == Any {
    func int(_ key: String) -> Int? { (self[key] as? NSNumber)?.intValue }
    func string(_ key: String) -> String? { self[key] as? String }
    func bool(_ key: String) -> Bool? { self[key] as? Bool }
    func object(_ key: String) -> [String: Any]? { self[key] as? [String: Any] }
    func objects(_ key: String) -> [[String: Any]] { (self[key] as? [Any])?.compactMap { $0 as? [String: Any] } ?? [] }
    func strings(_ key: String) -> [String]? { (self[key] as? [Any])?.compactMap { $0 as? String } }
    /// Pids of a `processes` list.
    func pids(_ key: String = "processes") -> [Int32] { objects(key).compactMap { $0.int("pid").map(Int32.init) } }
}

// MARK: - Sockets held by the test process

/// A socket the test holds; closed explicitly or when released.
final class TestSocket: @unchecked Sendable {
    private(set) var fd: Int32
    /// The local port (from getsockname).
    let port: UInt16

    init(fd: Int32) {
        self.fd = fd
        self.port = TestSocket.localPort(fd)
    }

    deinit { close() }

    func close() {
        if fd >= 0 { Glibc.close(fd); fd = -1 }
    }

    static func localPort(_ fd: Int32) -> UInt16 {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let rc = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard rc == 0 else { return 0 }
        let family = storage.ss_family
        return withUnsafePointer(to: &storage) { p -> UInt16 in
            if family == sa_family_t(AF_INET6) {
                return p.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { UInt16(bigEndian: $0.pointee.sin6_port) }
            }
            return p.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { UInt16(bigEndian: $0.pointee.sin_port) }
        }
    }

    /// Sends all of `bytes` (blocking socket), or throws.
    func sendAll(_ bytes: [UInt8]) throws {
        var sent = 0
        for _ in 0..<100_000 {
            if sent >= bytes.count { break }
            let n = bytes[sent...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                throw SupportError.errno("send")
            }
            sent += n
        }
    }

    /// Reads until `count` bytes arrived, EOF, or `timeout`; returns how many arrived.
    func read(count: Int, timeout: Double) -> Int {
        var total = 0
        var chunk = [UInt8](repeating: 0, count: 65536)
        let deadline = monotonic() + timeout
        for _ in 0..<100_000 {
            if total >= count { break }
            let remaining = deadline - monotonic()
            if remaining <= 0 { break }
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let n = Glibc.poll(&pfd, 1, Int32(max(1, remaining * 1000)))
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            let got = Glibc.recv(fd, &chunk, min(chunk.count, count - total), Int32(MSG_DONTWAIT))
            if got < 0 && (errno == EINTR || errno == EAGAIN) { continue }
            if got <= 0 { break }
            total += got
        }
        return total
    }

    /// True when the peer closed (a read returns 0) within `timeout`.
    func waitForEOF(timeout: Double) -> Bool {
        var chunk = [UInt8](repeating: 0, count: 4096)
        let deadline = monotonic() + timeout
        for _ in 0..<10_000 {
            let remaining = deadline - monotonic()
            if remaining <= 0 { return false }
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let n = Glibc.poll(&pfd, 1, Int32(max(1, remaining * 1000)))
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return false }
            let got = Glibc.recv(fd, &chunk, chunk.count, Int32(MSG_DONTWAIT))
            if got == 0 { return true }
            if got < 0 && errno != EINTR && errno != EAGAIN { return false }
        }
        return false
    }
}

/// A socket address for a numeric IPv4 or IPv6 literal.
func makeSockaddr(_ address: String, _ port: UInt16) throws -> (storage: sockaddr_storage, length: socklen_t, family: Int32) {
    var storage = sockaddr_storage()
    if address.contains(":") {
        var sin6 = sockaddr_in6()
        sin6.sin6_family = sa_family_t(AF_INET6)
        sin6.sin6_port = port.bigEndian
        guard inet_pton(AF_INET6, address, &sin6.sin6_addr) == 1 else { throw SupportError("bad IPv6 literal \(address)") }
        withUnsafeMutableBytes(of: &storage) { raw in withUnsafeBytes(of: sin6) { raw.copyMemory(from: $0) } }
        return (storage, socklen_t(MemoryLayout<sockaddr_in6>.size), AF_INET6)
    }
    var sin = sockaddr_in()
    sin.sin_family = sa_family_t(AF_INET)
    sin.sin_port = port.bigEndian
    guard inet_pton(AF_INET, address, &sin.sin_addr) == 1 else { throw SupportError("bad IPv4 literal \(address)") }
    withUnsafeMutableBytes(of: &storage) { raw in withUnsafeBytes(of: sin) { raw.copyMemory(from: $0) } }
    return (storage, socklen_t(MemoryLayout<sockaddr_in>.size), AF_INET)
}

private func setIntOption(_ fd: Int32, _ level: Int32, _ name: Int32, _ value: Int32) {
    var v = value
    setsockopt(fd, level, name, &v, socklen_t(MemoryLayout<Int32>.size))
}

private func bindSocket(_ fd: Int32, _ address: String, _ port: UInt16) throws {
    var (storage, length, _) = try makeSockaddr(address, port)
    let rc = withUnsafePointer(to: &storage) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.bind(fd, $0, length) }
    }
    if rc != 0 { throw SupportError.errno("bind \(address) port \(port)") }
}

enum Net {
    /// A TCP listener held by this process on `address` (port 0: the kernel picks) with `backlog`.
    /// IPv6 sockets are v6-only, so `::1` means exactly `::1`.
    static func tcpListener(_ address: String = "127.0.0.1", port: UInt16 = 0, backlog: Int32 = 128,
                            reusePort: Bool = false) throws -> TestSocket {
        let family = address.contains(":") ? AF_INET6 : AF_INET
        let fd = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        if fd < 0 { throw SupportError.errno("socket") }
        if family == AF_INET6 { setIntOption(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, 1) }
        if reusePort { setIntOption(fd, SOL_SOCKET, SO_REUSEPORT, 1) }
        do {
            try bindSocket(fd, address, port)
        } catch {
            Glibc.close(fd)
            throw error
        }
        if listen(fd, backlog) != 0 {
            let e = SupportError.errno("listen")
            Glibc.close(fd)
            throw e
        }
        return TestSocket(fd: fd)
    }

    /// A TCP socket bound to `address`:`port` that neither listens nor connects.
    static func tcpBound(_ address: String, port: UInt16) throws -> TestSocket {
        let family = address.contains(":") ? AF_INET6 : AF_INET
        let fd = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        if fd < 0 { throw SupportError.errno("socket") }
        if family == AF_INET6 { setIntOption(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, 1) }
        do {
            try bindSocket(fd, address, port)
        } catch {
            Glibc.close(fd)
            throw error
        }
        return TestSocket(fd: fd)
    }

    /// A bound, unconnected UDP socket held by this process.
    static func udpSocket(_ address: String = "127.0.0.1", port: UInt16 = 0) throws -> TestSocket {
        let family = address.contains(":") ? AF_INET6 : AF_INET
        let fd = socket(family, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        if fd < 0 { throw SupportError.errno("socket") }
        if family == AF_INET6 { setIntOption(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, 1) }
        do {
            try bindSocket(fd, address, port)
        } catch {
            Glibc.close(fd)
            throw error
        }
        return TestSocket(fd: fd)
    }

    /// A TCP client connected to `address`:`port`. Blocking (the connection is established when
    /// this returns), or non-blocking (the SYN is sent; the result does not matter).
    /// `from` binds the client's own end first (address and port) instead of letting connect pick.
    static func connect(_ address: String = "127.0.0.1", port: UInt16, nonBlocking: Bool = false,
                        from source: (address: String, port: UInt16)? = nil) throws -> TestSocket {
        var (storage, length, family) = try makeSockaddr(address, port)
        var type = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        if nonBlocking { type |= Int32(SOCK_NONBLOCK.rawValue) }
        let fd = socket(family, type, 0)
        if fd < 0 { throw SupportError.errno("socket") }
        if let source {
            do {
                try bindSocket(fd, source.address, source.port)
            } catch {
                Glibc.close(fd)
                throw error
            }
        }
        if !nonBlocking {
            // Loopback answers at once; this only bounds a wedged connect.
            var tv = timeval(tv_sec: 5, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        }
        let rc = withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, length) }
        }
        if rc != 0 && !(nonBlocking && errno == EINPROGRESS) {
            let e = SupportError.errno("connect \(address) port \(port)")
            Glibc.close(fd)
            throw e
        }
        return TestSocket(fd: fd)
    }

    /// Accepts one connection within `timeout`.
    static func accept(_ listener: TestSocket, timeout: Double = 5) throws -> TestSocket {
        var pfd = pollfd(fd: listener.fd, events: Int16(POLLIN), revents: 0)
        let deadline = monotonic() + timeout
        for _ in 0..<1000 {
            let remaining = deadline - monotonic()
            if remaining <= 0 { break }
            let n = Glibc.poll(&pfd, 1, Int32(max(1, remaining * 1000)))
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            let fd = accept4(listener.fd, nil, nil, Int32(SOCK_CLOEXEC.rawValue))
            if fd >= 0 { return TestSocket(fd: fd) }
            if errno != EINTR && errno != EAGAIN { throw SupportError.errno("accept") }
        }
        throw SupportError("accept: nothing to accept within \(timeout)s")
    }

    /// Ports `portwatch free` vouches for: outside the ephemeral range (so no client's
    /// automatic port can share the number, on any local address) and bindable on both
    /// wildcards right now.
    ///
    /// Kernel-picked ports (bind to port 0 on one address) are not enough on a busy host: the
    /// same number can be in use on another loopback address (127.0.0.2:P), and portwatch counts
    /// per port number, so those sockets would show up in exact counts.
    static func freePorts(_ count: Int = 1, udp: Bool = false) throws -> [UInt16] {
        let r = runPortwatch(["free", "--count", "\(count)", "--json"] + (udp ? ["--udp"] : []))
        let data = r.stdout.data(using: .utf8) ?? Data()
        let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any]
        let ports = (object?["ports"] as? [Any])?.compactMap { ($0 as? NSNumber).flatMap { UInt16(exactly: $0.intValue) } } ?? []
        guard r.status == 0, ports.count == count else { throw SupportError("portwatch free --count \(count): \(r)") }
        return ports
    }

    /// Retries `body` with fresh ports from `portwatch free` while a bind races someone else.
    static func onFreePorts<T>(_ count: Int = 1, udp: Bool = false, _ body: ([UInt16]) throws -> T) throws -> T {
        var lastError: Error = SupportError("no attempt")
        for _ in 0..<5 {
            let ports = try freePorts(count, udp: udp)
            do { return try body(ports) } catch { lastError = error }
        }
        throw lastError
    }

    /// A TCP listener on `address` with `backlog`, on a port from `portwatch free`.
    static func tcpListenerOnFreePort(_ address: String = "127.0.0.1", backlog: Int32 = 128) throws -> TestSocket {
        try onFreePorts { try tcpListener(address, port: $0[0], backlog: backlog) }
    }

    /// A TCP port nothing holds: one from `portwatch free`, bound by the test and closed again.
    static func closedPort() throws -> UInt16 {
        let s = try tcpListenerOnFreePort("0.0.0.0", backlog: 1)
        defer { s.close() }
        return s.port
    }

    /// UDP sockets bound on 127.0.0.1 and ::1 on one port from `portwatch free --udp`.
    static func udpPair() throws -> (v4: TestSocket, v6: TestSocket) {
        try onFreePorts(udp: true) { ports in
            let v4 = try udpSocket("127.0.0.1", port: ports[0])
            do {
                return (v4, try udpSocket("::1", port: ports[0]))
            } catch {
                v4.close()
                throw error
            }
        }
    }
}

// MARK: - python3 children holding sockets

/// A python3 child that binds sockets, prints their ports on one line, serves them, and exits
/// when its stdin closes (so it never outlives the test process) or when killed.
///
/// Each spec is `KIND:HOST:PORT`:
/// - `tcp`: listen (backlog 16) and accept-then-close every connection;
/// - `tcp-hold`: listen and never accept;
/// - `tcp-reuseport`: like `tcp-hold`, with SO_REUSEPORT (for several processes on one port);
/// - `udp-echo`: answer every datagram with the same bytes;
/// - `udp-silent`: bind and never answer.
/// HOST `::` is dual-stack. PORT 0 lets the kernel pick.
final class PythonServer: @unchecked Sendable {
    let child: Child
    /// The bound ports, in spec order.
    let ports: [UInt16]
    var pid: pid_t { child.pid }

    static let script = #"""
import os, select, signal, socket, sys
signal.signal(signal.SIGTERM, signal.SIG_DFL)
socks = []
ports = []
for spec in sys.argv[1:]:
    kind, rest = spec.split(":", 1)
    host, port = rest.rsplit(":", 1)
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    typ = socket.SOCK_DGRAM if kind.startswith("udp") else socket.SOCK_STREAM
    s = socket.socket(fam, typ)
    if fam == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0 if host == "::" else 1)
    if kind == "tcp-reuseport":
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind((host, int(port)))
    if typ == socket.SOCK_STREAM:
        s.listen(16)
    socks.append((kind, s))
    ports.append(str(s.getsockname()[1]))
print(" ".join(ports), flush=True)
watch = [sys.stdin.fileno()] + [s.fileno() for k, s in socks if k in ("tcp", "udp-echo")]
by_fd = {s.fileno(): (k, s) for k, s in socks}
while True:
    ready, _, _ = select.select(watch, [], [], 60)
    for fd in ready:
        if fd == sys.stdin.fileno():
            if not os.read(fd, 4096):
                sys.exit(0)
            continue
        kind, s = by_fd[fd]
        try:
            if kind == "tcp":
                c, _ = s.accept()
                c.close()
            else:
                data, addr = s.recvfrom(65535)
                s.sendto(data, addr)
        except OSError:
            pass
"""#

    private init(child: Child, ports: [UInt16]) {
        self.child = child
        self.ports = ports
    }

    /// Starts the child (inside network namespace `netns` when given) and waits for its ports.
    static func start(_ specs: [String], netns: String? = nil, timeout: Double = 10) throws -> PythonServer {
        guard let python = TestEnv.python3 else { throw SupportError("python3 not found") }
        let child: Child
        if let netns {
            guard let ip = TestEnv.ip else { throw SupportError("ip not found") }
            child = try Child.spawn(ip, ["netns", "exec", netns, python, "-u", "-c", script] + specs, stdin: .pipe)
        } else {
            child = try Child.spawn(python, ["-u", "-c", script] + specs, stdin: .pipe)
        }
        guard let line = child.readLine(timeout: timeout) else {
            let err = child.drainStderr()
            child.kill()
            throw SupportError("python3 child \(specs) did not report its ports: \(err)")
        }
        let ports = line.split(separator: " ").compactMap { UInt16($0) }
        guard ports.count == specs.count else {
            child.kill()
            throw SupportError("python3 child \(specs) reported '\(line)'")
        }
        return PythonServer(child: child, ports: ports)
    }

    /// Kills and reaps the child.
    func stop() { child.kill() }
}

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

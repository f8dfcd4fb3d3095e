// Child processes spawned by tests, and running external tools to completion.

import Foundation
#if canImport(Glibc)
import Glibc
#endif

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

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// How a command run for an alert ended.
public enum ExecResult: Sendable, Hashable, CustomStringConvertible {
    case exited(status: Int32)
    case signaled(signal: Int32)
    /// Still running at its timeout (or at shutdown): it was killed (SIGTERM, SIGKILL a second later).
    case timedOut(pid: Int32)
    case failedToStart(reason: String)

    public var description: String {
        switch self {
        case .exited(let status): "exited with status \(status)"
        case .signaled(let signal): "killed by signal \(signal)"
        case .timedOut(let pid): "timed out (pid \(pid) killed)"
        case .failedToStart(let reason): "could not start: \(reason)"
        }
    }
}

/// Runs a command with some bytes on its stdin and a deadline, without blocking a thread: the
/// child is reaped with `waitpid(WNOHANG)` between short sleeps of the calling task.
enum ChildProcess {
    /// `posix_spawn_file_actions_addclosefrom_np` is a GNU extension the Glibc module leaves out.
    private typealias CloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
    private static let closeFrom: CloseFrom? = {
        guard let handle = dlopen(nil, RTLD_NOW), let sym = dlsym(handle, "posix_spawn_file_actions_addclosefrom_np")
        else { return nil }
        return unsafeBitCast(sym, to: CloseFrom.self)
    }()

    static func run(_ command: [String], stdin input: [UInt8], timeout: Duration) async -> ExecResult {
        guard let program = command.first, !program.isEmpty else { return .failedToStart(reason: "empty command") }
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else { return .failedToStart(reason: "pipe: \(String(cString: strerror(errno)))") }
        // The daemon's own descriptors stay out of the child; our end of the pipe too.
        _ = fcntl(fds[0], F_SETFD, FD_CLOEXEC)
        _ = fcntl(fds[1], F_SETFD, FD_CLOEXEC)

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, fds[0], 0)
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        if let closeFrom { _ = closeFrom(&actions, 3) }

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
        // Its own process group, so a timeout kills what the command started as well.
        posix_spawnattr_setpgroup(&attributes, 0)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETPGROUP))

        let argv = command.map { strdup($0) } + [nil]
        defer { for p in argv { free(p) } }
        var pid: pid_t = 0
        let rc = posix_spawnp(&pid, program, &actions, &attributes, argv, environ)
        close(fds[0])
        guard rc == 0 else {
            close(fds[1])
            return .failedToStart(reason: "\(program): \(String(cString: strerror(rc)))")
        }
        feed(fds[1], input)
        close(fds[1])

        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        var killedAt: ContinuousClock.Instant?
        while true {
            var status: Int32 = 0
            let r = waitpid(pid, &status, WNOHANG)
            if r == pid {
                if killedAt != nil { return .timedOut(pid: pid) }
                let signal = status & 0x7f
                return signal == 0 ? .exited(status: (status >> 8) & 0xff) : .signaled(signal: signal)
            }
            if r < 0 && errno != EINTR { return .exited(status: -1) }
            let now = clock.now
            if Task.isCancelled {
                // Shutting down: no grace period, and no sleeping either (a cancelled sleep returns
                // at once), so kill and reap right here; a killed process exits promptly.
                kill(-pid, SIGKILL)
                var status: Int32 = 0
                while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
                return .timedOut(pid: pid)
            }
            if killedAt == nil, now >= deadline {
                kill(-pid, SIGTERM)
                killedAt = now
            } else if let killedAt, now - killedAt >= .seconds(1) {
                kill(-pid, SIGKILL)
            }
            // Not a readiness wait: the child has no channel to us but its exit; 10 ms polls keep
            // the cost negligible for the few alerts a daemon sends.
            try? await Task.sleep(for: .milliseconds(10))
        }
    }

    /// Writes what fits into the pipe without blocking: a child that never reads its stdin must
    /// not hold the channel (an alert document is far below the pipe's 64 KiB anyway).
    private static func feed(_ fd: Int32, _ bytes: [UInt8]) {
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return }
            offset += n
        }
    }
}

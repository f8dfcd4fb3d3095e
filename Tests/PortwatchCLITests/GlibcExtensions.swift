// _GNU_SOURCE functions the Glibc module leaves out, for the test helpers.

import Foundation
#if canImport(Glibc)
import Glibc
#endif

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

#if canImport(Glibc)
import Glibc
#endif
import CSockDiag

/// One epoll instance for a scan's sockets; every call's failure becomes a `SystemCallError`.
struct Epoll: ~Copyable {
    let fd: Int32
    private var events: [epoll_event]

    init(capacity: Int = 1024) throws(PortwatchError) {
        fd = epoll_create1(Int32(EPOLL_CLOEXEC))
        if fd < 0 { throw SystemCallError("epoll_create1", errno: errno).asPortwatchError }
        events = Array(repeating: epoll_event(), count: capacity)
    }

    deinit { close(fd) }

    static let input = EPOLLIN.rawValue
    static let output = EPOLLOUT.rawValue
    static let oneShot = EPOLLONESHOT.rawValue

    /// Adds `socket` (or re-arms it, when it is already in the set) for `mask`, tagged with `tag`.
    func arm(_ socket: Int32, _ mask: UInt32, tag: UInt64, alreadyAdded: Bool) throws(PortwatchError) {
        var event = epoll_event()
        event.events = mask
        event.data.u64 = tag
        if epoll_ctl(fd, alreadyAdded ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, socket, &event) != 0 {
            throw SystemCallError("epoll_ctl", errno: errno).asPortwatchError
        }
    }

    /// Waits up to `milliseconds`; returns how many descriptors are ready (0 when interrupted).
    mutating func wait(milliseconds: Int32) throws(PortwatchError) -> Int {
        let n = events.withUnsafeMutableBufferPointer { epoll_wait(fd, $0.baseAddress, Int32($0.count), milliseconds) }
        if n < 0 {
            if errno == EINTR { return 0 }
            throw SystemCallError("epoll_wait", errno: errno).asPortwatchError
        }
        return Int(n)
    }

    /// The tag and events of the `i`th ready descriptor of the last wait.
    func ready(_ i: Int) -> (tag: UInt64, events: UInt32) { (events[i].data.u64, events[i].events) }
}

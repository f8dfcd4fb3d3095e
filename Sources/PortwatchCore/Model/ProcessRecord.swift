/// A process that holds sockets: who is behind a port.
public struct ProcessRecord: Sendable, Hashable, Codable {
    public var pid: Int32
    /// Short name (/proc/PID/comm).
    public var name: String
    /// User name (or the numeric uid when it has no name); nil when unknown.
    public var user: String?
    public var uid: UInt32?
    /// Full command line, arguments joined by spaces.
    public var command: String
    /// systemd unit (e.g. `nginx.service`), from /proc/PID/cgroup.
    public var unit: String?
    /// Container id (docker, containerd, podman...), from /proc/PID/cgroup.
    public var container: String?
    /// The container's runtime (`docker`, `containerd`, `podman`, `systemd-nspawn`, `lxc`...).
    public var containerRuntime: String? = nil

    public init(pid: Int32, name: String, user: String? = nil, uid: UInt32? = nil, command: String = "",
                unit: String? = nil, container: String? = nil) {
        self.pid = pid
        self.name = name
        self.user = user
        self.uid = uid
        self.command = command
        self.unit = unit
        self.container = container
    }
}

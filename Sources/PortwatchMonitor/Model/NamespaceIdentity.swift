import PortwatchCore

extension NetworkNamespace {
    /// How the daemon names another namespace everywhere it keeps or shows one (rows, events'
    /// `netns`, the `netns` metric label, history): its /run/netns name, which outlives reboots,
    /// else `net:[INODE]` (as `readlink /proc/PID/ns/net` and `lsns -t net` show it), which lasts
    /// as long as the namespace does. Not `pid:PID` as in the CLI's tables: the lowest pid inside
    /// can change while the namespace lives, and a key must not.
    public var daemonLabel: String {
        if let name { return name }
        if isOwn { return "host" }
        return "net:[\(inode)]"
    }
}

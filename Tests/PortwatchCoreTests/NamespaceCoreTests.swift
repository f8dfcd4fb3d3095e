import Foundation
import Testing
import PortwatchTestSupport
@testable import PortwatchCore
#if canImport(Glibc)
import Glibc
#endif

// Container identity from /proc/PID/cgroup, and namespaces found, resolved and entered for real.

private let hex64 = "4f3c2b1a0e9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b"

@Test func dockerCgroupFixtureNamesTheContainerAndRuntime() throws {
    // /proc/PID/cgroup of a process in a docker container (systemd cgroup driver, cgroup v2).
    let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Fixtures/cgroup-docker-v2.txt").path
    let text = try #require(readFileString(path))
    #expect(ProcessScanner.containerIdentity(cgroup: text) == ContainerIdentity(id: hex64, runtime: "docker"))
    // The cgroupfs driver on a v1 host (the older fixture) says docker too.
    let v1 = try #require(readFileString(URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Fixtures/cgroup-docker-v1.txt").path))
    #expect(ProcessScanner.containerIdentity(cgroup: v1)?.runtime == "docker")
}

@Test(arguments: [
    ("0::/kubepods.slice/kubepods-pod1.slice/cri-containerd-\(hex64).scope\n", hex64, "containerd"),
    ("0::/kubepods.slice/kubepods-besteffort.slice/crio-\(hex64).scope\n", hex64, "cri-o"),
    ("0::/kubepods/burstable/pod1f2e/\(hex64)\n", hex64, "kubepods"),
    ("0::/machine.slice/libpod-\(hex64).scope/container\n", hex64, "podman"),
    ("0::/machine.slice/machine-web\\x2d1.scope/system.slice/nginx.service\n", "web-1", "systemd-nspawn"),
    ("0::/lxc.payload.db1/system.slice/postgres.service\n", "db1", "lxc"),
    ("4:memory:/lxc/db2\n1:name=systemd:/lxc/db2\n", "db2", "lxc"),
])
func containerRuntimesAreRecognised(_ text: String, _ id: String, _ runtime: String) {
    #expect(ProcessScanner.containerIdentity(cgroup: text) == ContainerIdentity(id: id, runtime: runtime))
}

@Test func hostProcessesAreInNoContainer() {
    for text in ["0::/system.slice/nginx.service\n", "0::/\n", "", "0::/machine.slice/libpod-conmon-\(hex64).scope\n",
                 "0::/lxc.monitor.db1\n"] {
        #expect(ProcessScanner.containerIdentity(cgroup: text) == nil, "\(text)")
    }
}

@Test func ownNamespaceIsFoundAndLabelledHost() throws {
    let own = try #require(NamespaceDirectory.own())
    var st = stat()
    #expect(stat("/proc/self/ns/net", &st) == 0)
    #expect(own.inode == UInt64(st.st_ino))
    #expect(own.isOwn)
    let all = NamespaceDirectory.discover()
    #expect(all.namespaces.first?.inode == own.inode)
    #expect(Set(all.namespaces.map(\.inode)).count == all.namespaces.count)
    #expect(throws: PortwatchError.self) { try NamespaceDirectory.resolve("nosuch-\(getpid())") }
    #expect(throws: PortwatchError.self) { try NamespaceDirectory.resolve("/etc/hostname") }
    #expect(throws: PortwatchError.self) { try NamespaceDirectory.resolve("pid:0") }
}

private let canAddNamespaces: Bool = geteuid() == 0 && access("/usr/sbin/ip", X_OK) == 0

/// Runs `ip ARGS`, returning its exit status.
@discardableResult
private func ip(_ args: [String]) -> Int32 {
    var pid: pid_t = 0
    let argv = (["/usr/sbin/ip"] + args).map { strdup($0) } + [nil]
    defer { for a in argv { free(a) } }
    guard posix_spawn(&pid, "/usr/sbin/ip", nil, nil, argv, environ) == 0 else { return -1 }
    var status: Int32 = 0
    waitpid(pid, &status, 0)
    return status
}

@Test(.blocking, .enabled(if: canAddNamespaces, "needs root and ip to add a network namespace"))
func namedNamespaceIsResolvedEnteredAndForgottenWhenDeleted() throws {
    let name = "pwc-\(getpid())-core"
    #expect(ip(["netns", "add", name]) == 0)
    defer { ip(["netns", "delete", name]) }
    ip(["-n", name, "link", "set", "lo", "up"])
    let ns = try NamespaceDirectory.resolve(name)
    var st = stat()
    #expect(stat("/run/netns/\(name)", &st) == 0)
    #expect(ns.inode == UInt64(st.st_ino))
    #expect(ns.name == name && !ns.isOwn)
    #expect(NamespaceDirectory.discover().namespaces.contains { $0.inode == ns.inode && $0.name == name })

    // A listener made inside the namespace is seen through its socket, not through ours.
    let (fd, port) = try NamespaceEntry.run(in: ns) { () throws(PortwatchError) -> (Int32, UInt16) in
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        listen(fd, 4)
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        return (fd, UInt16(bigEndian: addr.sin_port))
    }
    defer { close(fd) }
    let sockets = NamespaceSockets()
    let snapshot = NamespaceSnapshot.take(SnapshotOptions(processes: .owners), namespaces: [ns], sockets: sockets)
    let part = try #require(snapshot.parts.first)
    #expect(part.snapshot.ports.contains { $0.port == port && $0.listening })
    // The listener belongs to this test process (the fd is still open here).
    #expect(part.snapshot.ports.first { $0.port == port }?.processes.map(\.pid) == [getpid()])

    // Deleted: the listener keeps the namespace alive, but the name is gone, so entering it
    // by name fails with a clear error, and no crash.
    ip(["netns", "delete", name])
    #expect(throws: PortwatchError.self) { try NamespaceEntry.run(in: ns) { () throws(PortwatchError) in () } }
}

/// Runs `ip netns exec NAME sysctl -qw SETTING`, returning its exit status.
private func sysctl(in name: String, _ setting: String) -> Int32 {
    ip(["netns", "exec", name, "sysctl", "-qw", setting])
}

@Test(.blocking, .enabled(if: canAddNamespaces, "needs root and ip to add a network namespace"))
func namespaceSourcesReadTheirOwnNamespacesSettings() throws {
    let name = "pwc-\(getpid())-sysctl"
    #expect(ip(["netns", "add", name]) == 0)
    defer { ip(["netns", "delete", name]) }
    ip(["-n", name, "link", "set", "lo", "up"])
    #expect(sysctl(in: name, "net.ipv4.ip_local_port_range=20000 20100") == 0)
    let ns = try NamespaceDirectory.resolve(name)
    let sockets = NamespaceSockets()
    let source = try sockets.sources(for: [ns])[0].get()
    #expect(source.ephemeralRange == EphemeralRange(20000...20100))
    // Ours is untouched, and is what a source of our own namespace reports.
    #expect(try sockets.sources(for: [try #require(NamespaceDirectory.own())])[0].get().ephemeralRange == .system())
    #expect(EphemeralRange.system() != EphemeralRange(20000...20100))

    // The files opened inside keep showing the namespace: a change there is seen at the next
    // read, from this thread, which never entered it.
    #expect(sysctl(in: name, "net.ipv4.ip_local_port_range=21000 21999") == 0)
    #expect(source.ephemeralRange == EphemeralRange(21000...21999))
    // A snapshot's classifier judges by that range.
    let snapshot = try PortSnapshot.take(SnapshotOptions(processes: .none), source: source)
    #expect(snapshot.classifier.ephemeral == EphemeralRange(21000...21999))

    // Sockets in use there, not here, size the dump: three listeners inside.
    let settings = try NamespaceEntry.run(in: ns) { () throws(PortwatchError) -> NamespaceKernelSettings in NamespaceKernelSettings() }
    let empty = settings.socketCountHint
    let fds = try NamespaceEntry.run(in: ns) { () throws(PortwatchError) -> [Int32] in
        (0..<3).map { _ in
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_addr.s_addr = inet_addr("127.0.0.1")
            _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
            listen(fd, 4)
            return fd
        }
    }
    defer { for fd in fds { close(fd) } }
    #expect(settings.socketCountHint == empty + 3)
}

@Test func ephemeralRangeTextIsParsed() {
    #expect(EphemeralRange.parse("32768\t60999\n") == EphemeralRange(32768...60999))
    #expect(EphemeralRange.parse("20000 20100") == EphemeralRange(20000...20100))
    #expect(EphemeralRange.parse("60999 32768") == nil)
    #expect(EphemeralRange.parse("1") == nil)
    #expect(EphemeralRange.parse("a b") == nil)
    #expect(SockDiagSource.socketCountHint(["TCP: inuse 3 orphan 0 tw 2 alloc 9 mem 1\nUDP: inuse 4 mem 0\n",
                                            "TCP6: inuse 1\nUDP6: inuse 2\n"]) == 64 + 3 + 2 + 4 + 1 + 2)
}

import Foundation
import Glibc
import Testing
import PortwatchTestSupport
@testable import PortwatchCore

// MARK: - Helpers

/// A TCP listener on 127.0.0.1 (port chosen by the kernel) in this process; returns (fd, inode).
private func openListener() throws -> (fd: Int32, inode: UInt64) {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    try #require(fd >= 0)
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = 0
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let bound = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    try #require(bound == 0)
    try #require(listen(fd, 16) == 0)
    var st = stat()
    try #require(fstat(fd, &st) == 0)
    return (fd, UInt64(st.st_ino))
}

/// Our own comm as the kernel reports it (the test binary's name, cut to 15 bytes).
private func ownComm() -> String {
    (readFileString("/proc/self/comm") ?? "").trimmingCharacters(in: .newlines)
}

/// A fresh empty directory under the temporary directory.
private func makeTempDir() throws -> String {
    let path = FileManager.default.temporaryDirectory
        .appendingPathComponent("portwatch-proc-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

// MARK: - The real /proc

@Test func targetedScanFindsOwnListener() throws {
    let (fd, inode) = try openListener()
    defer { close(fd) }

    let scan = ProcessScanner.scan(inodes: [inode])
    #expect(scan.owners[inode]?.contains(getpid()) == true)
    let me = try #require(scan.processes[getpid()])
    #expect(me.name == ownComm())
    #expect(me.uid == getuid())
    #expect(me.user == (getuid() == 0 ? "root" : me.user))
    #expect(me.user != nil)
    #expect(me.command.hasPrefix(CommandLine.arguments[0]))
    #expect(scan.processes(owning: inode).map(\.pid).contains(getpid()))
}

@Test func fullScanContainsOwnListener() throws {
    let (fd, inode) = try openListener()
    defer { close(fd) }

    let scan = ProcessScanner.scan(inodes: nil)
    #expect(scan.owners[inode]?.contains(getpid()) == true)
    #expect(scan.processes[getpid()]?.name == ownComm())
    // Every owner was alive a moment ago; almost all must have details.
    #expect(scan.owners.count > 0)
}

@Test func missingInodeHasNoOwnerAndScanEnds() {
    let scan = ProcessScanner.scan(inodes: [UInt64.max - 7])
    #expect(scan.owners.isEmpty)
    #expect(scan.processes.isEmpty)
    // A note appears only when some process really could not be inspected (even root cannot
    // read PID 1's fd links in some sandboxes); it is never a blank.
    #expect(scan.notes.isEmpty == (scan.unreadableProcesses == 0))
}

@Test func emptyWantedSetIsEmptyScan() {
    let scan = ProcessScanner.scan(inodes: [])
    #expect(scan.owners.isEmpty)
    #expect(scan.unreadableProcesses == 0)
}

@Test func missingProcRootSaysSo() {
    let scan = ProcessScanner.scan(inodes: nil, procRoot: "/nonexistent/proc")
    #expect(scan.owners.isEmpty)
    #expect(scan.notes.contains { $0.contains("/nonexistent/proc") })
    #expect(ProcessScanner.record(pid: 1, procRoot: "/nonexistent/proc") == nil)
}

@Test(.blocking) func recordOfSelfAndOfKernelThread() throws {
    let me = try #require(ProcessScanner.record(pid: getpid()))
    #expect(me.pid == getpid())
    #expect(me.name == ownComm())
    // kthreadd (pid 2) has an empty command line, shown as [name] like ps does.
    if let kthreadd = ProcessScanner.record(pid: 2), kthreadd.name == "kthreadd" {
        #expect(kthreadd.command == "[kthreadd]")
    }
    #expect(ProcessScanner.record(pid: -5) == nil)
    #expect(ProcessScanner.record(pid: Int32.max) == nil)
}

/// Runs a python3 script that prints "PID INODE" once it holds its socket; returns both.
private func spawnSocketHolder(_ script: String) throws -> (Process, Int32, UInt64) {
    let child = Process()
    child.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    child.arguments = ["python3", "-c", script]
    let output = Pipe()
    child.standardOutput = output
    try child.run()
    var line = Data()
    while !line.contains(UInt8(ascii: "\n")) {
        let chunk = output.fileHandleForReading.availableData
        if chunk.isEmpty { break }  // the child died before printing
        line.append(chunk)
    }
    let fields = String(decoding: line, as: UTF8.self).split(whereSeparator: \.isWhitespace)
    guard fields.count == 2, let pid = Int32(fields[0]), let inode = UInt64(fields[1]) else {
        kill(child.processIdentifier, SIGKILL)
        child.waitUntilExit()
        throw CocoaError(.fileReadCorruptFile)
    }
    return (child, pid, inode)
}

/// A child process holding a listener only on fd 500: pass 1 (fds 0..<16) cannot see it, so
/// finding it proves the pass-2 listing works.
@Test(.blocking) func childListenerOnHighFdIsFoundByListing() throws {
    let script = """
    import socket, os, time
    s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
    fd = s.detach(); os.dup2(fd, 500); os.close(fd)
    print(os.getpid(), os.fstat(500).st_ino, flush=True)
    time.sleep(30)
    """
    let (child, pid, inode) = try spawnSocketHolder(script)
    defer {
        kill(child.processIdentifier, SIGKILL)
        child.waitUntilExit()
    }

    let targeted = ProcessScanner.scan(inodes: [inode])
    #expect(targeted.owners[inode] == [pid])
    #expect(targeted.processes[pid]?.name.hasPrefix("python") == true)
    #expect(targeted.processes[pid]?.command.contains("import socket") == true)

    let full = ProcessScanner.scan(inodes: nil)
    #expect(full.owners[inode] == [pid])
}

/// A child with a big fd table (1,200 pipes, so its fds are dense) holding a listener on fd
/// 3000, far above the fds a first look reads: the targeted walk every command uses (`ports`,
/// `check`, `top`, `who`) goes on past fd 1023 for exactly that unowned socket, and the full
/// walk (dense probing by number) finds it too.
@Test(.blocking) func listenerAboveFd1023IsFoundByTheTargetedWalk() throws {
    let script = """
    import socket, os, time, resource
    resource.setrlimit(resource.RLIMIT_NOFILE, (4096, 4096))
    keep = [os.pipe() for _ in range(1200)]
    s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
    fd = s.detach(); os.dup2(fd, 3000); os.close(fd)
    print(os.getpid(), os.fstat(3000).st_ino, flush=True)
    time.sleep(30)
    """
    let (child, pid, inode) = try spawnSocketHolder(script)
    defer {
        kill(child.processIdentifier, SIGKILL)
        child.waitUntilExit()
    }
    // The child really is past the point where the old walk stopped.
    let fdCount = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count
    #expect(fdCount > 2400)

    let targeted = ProcessScanner.scan(inodes: [inode])
    #expect(targeted.owners[inode] == [pid])
    #expect(targeted.processes[pid]?.name.hasPrefix("python") == true)
    #expect(!targeted.notes.contains { $0.contains("not searched") })
    // The bounded walk of `ports` reads up to its budget of high fds: this child's are within it.
    let bounded = ProcessScanner.scan(inodes: [inode], highFdBudget: ProcessScanner.boundedHighFdBudget)
    #expect(bounded.owners[inode] == [pid])
    // A budget too small to reach fd 3000 says where the rest of the search lies.
    let starved = ProcessScanner.scan(inodes: [inode], highFdBudget: 0)
    #expect(starved.owners[inode] == nil)
    #expect(starved.notes.contains { $0.contains("portwatch who PORT") })
    let full = ProcessScanner.scan(inodes: nil)
    #expect(full.owners[inode] == [pid])

    // The snapshot `ports` and `check` take, and the cached lookups of `top`'s sampler.
    var query = SocketQuery(protocols: [.tcp], withCounters: false)
    query.listenersOnly = true
    let snapshot = try PortSnapshot.take(SnapshotOptions(query: query, processes: .owners))
    let row = try #require(snapshot.ports.first { $0.listeners.contains { $0.inode == inode } })
    #expect(row.processes.map(\.pid) == [pid])
    var cache: OwnerCache? = OwnerCache()
    let sampled = try PortSnapshot.take(SnapshotOptions(query: query, processes: .owners), source: SockDiagSource(),
                                        ownerCache: &cache)
    #expect(sampled.ports.first { $0.port == row.port }?.processes.map(\.pid) == [pid])
}

/// A listener on fd 3000 of a process with 2,400 fds, shared after fork() with two children
/// (each as big): `who` and `ports` name all three holders, not the first one the high-fd
/// search meets.
@Test(.blocking) func socketSharedAboveFd1023NamesEveryHolder() throws {
    let script = """
    import socket, os, time, resource, sys
    resource.setrlimit(resource.RLIMIT_NOFILE, (4096, 4096))
    keep = [os.pipe() for _ in range(1200)]
    s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
    fd = s.detach(); os.dup2(fd, 3000); os.close(fd)
    for _ in range(2):
        if os.fork() == 0:
            time.sleep(30); os._exit(0)
    print(os.getpid(), os.fstat(3000).st_ino, flush=True)
    time.sleep(30)
    """
    let (child, pid, inode) = try spawnSocketHolder(script)
    let children = try String(contentsOfFile: "/proc/\(pid)/task/\(pid)/children", encoding: .utf8)
        .split(separator: " ").compactMap { Int32($0) }
    defer {
        for c in children { kill(c, SIGKILL) }
        kill(child.processIdentifier, SIGKILL)
        child.waitUntilExit()
    }
    try #require(children.count == 2)
    let holders = ([pid] + children).sorted()

    // `who` and `kill`: every fd of every process.
    let thorough = ProcessScanner.scan(inodes: [inode], allHolders: true)
    #expect(thorough.owners[inode]?.sorted() == holders)
    // `ports`, `check` and `top`: within the high-fd budget, which three tables of ~1,400 fit.
    let bounded = ProcessScanner.scan(inodes: [inode], highFdBudget: ProcessScanner.boundedHighFdBudget, allHolders: true)
    #expect(bounded.owners[inode]?.sorted() == holders)
    #expect(!bounded.notes.contains { $0.contains("not searched") })
    var query = SocketQuery(protocols: [.tcp], withCounters: false)
    query.listenersOnly = true
    let snapshot = try PortSnapshot.take(SnapshotOptions(query: query, processes: .owners))
    let row = try #require(snapshot.ports.first { $0.listeners.contains { $0.inode == inode } })
    #expect(row.processes.map(\.pid) == holders)
    // The full walk of `ports --all` always read them all.
    #expect(ProcessScanner.scan(inodes: nil).owners[inode]?.sorted() == holders)
}

/// Processes come and go while `ports --all` walks /proc (a shell loop spawning short-lived
/// processes beside it): every part of the walk splits one pid listing, so a process that lives
/// through the whole walk keeps its sockets' owner in every run.
@Test(.blocking) func fullWalkKeepsOwnersWhileProcessesComeAndGo() throws {
    let script = """
    import socket, os, time
    s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
    print(os.getpid(), os.fstat(s.fileno()).st_ino, flush=True)
    time.sleep(60)
    """
    let (child, pid, inode) = try spawnSocketHolder(script)
    defer {
        kill(child.processIdentifier, SIGKILL)
        child.waitUntilExit()
    }
    // Bounded churn: at most 4,000 short processes, and never longer than 60 s.
    let churn = Process()
    churn.executableURL = URL(fileURLWithPath: "/usr/bin/timeout")
    churn.arguments = ["60", "/bin/sh", "-c", "i=0; while [ $i -lt 4000 ]; do /bin/true; i=$((i+1)); done"]
    try churn.run()
    defer {
        churn.terminate()
        churn.waitUntilExit()
    }

    var misses = 0
    var runs = 0
    for _ in 0..<12 {
        let snapshot = try PortSnapshot.take(SnapshotOptions(query: SocketQuery(protocols: [.tcp], withCounters: false),
                                                             includeOutgoing: true, processes: .full))
        runs += 1
        if snapshot.owners[inode] != [pid] { misses += 1 }
        if ProcessScanner.scan(inodes: nil).owners[inode] != [pid] { misses += 1 }
        if !churn.isRunning { break }
    }
    #expect(runs > 0)
    #expect(misses == 0)
}

@Test func slicesOfOnePidListCoverItOnce() {
    let pids: [Int32] = Array(1...97)
    for parts in 1...7 {
        let slices = (0..<parts).map { ProcessScanner.slice(pids, part: $0, of: parts) }
        #expect(slices.flatMap { $0 }.sorted() == pids)
        #expect(slices.map(\.count).max()! - slices.map(\.count).min()! <= 1)
    }
    #expect(ProcessScanner.slice(pids, part: 3, of: 3).isEmpty)
}

// MARK: - A fake proc root

/// Builds a proc-like tree: pid 100 with details and sockets on fds 3 and 40 (the same one) and
/// 20, pid 150 sharing socket 4242 (as a forked child does), pid 200 without an fd directory (exited), pid 300 sharing socket 777 but without details
/// (exited after its fds were read), and entries that are not processes.
private func makeFakeProc() throws -> String {
    let root = try makeTempDir()
    let fm = FileManager.default
    func dir(_ path: String) throws { try fm.createDirectory(atPath: root + "/" + path, withIntermediateDirectories: true) }
    func file(_ path: String, _ text: String) throws { try text.write(toFile: root + "/" + path, atomically: false, encoding: .utf8) }
    func link(_ path: String, _ target: String) throws { try fm.createSymbolicLink(atPath: root + "/" + path, withDestinationPath: target) }

    try dir("100/fd")
    try file("100/comm", "fakeproc\n")
    try file("100/cmdline", "/usr/bin/fake\u{0}--port\u{0}4242\u{0}")
    try file("100/status", "Name:\tfakeproc\nUmask:\t0022\nState:\tS (sleeping)\nUid:\t1000\t1001\t1001\t1001\nGid:\t1000\t1000\t1000\t1000\n")
    try file("100/cgroup", "0::/system.slice/fake.service\n")
    try link("100/fd/0", "/dev/null")
    try link("100/fd/3", "socket:[4242]")
    try link("100/fd/4", "pipe:[99]")
    try link("100/fd/20", "socket:[777]")
    try link("100/fd/21", "anon_inode:[eventpoll]")
    try link("100/fd/40", "socket:[4242]")

    try dir("150/fd")
    try file("150/comm", "child\n")
    try link("150/fd/5", "socket:[4242]")

    try dir("200")

    try dir("300/fd")
    try link("300/fd/30", "socket:[777]")

    try dir("sys")
    try dir("12abc/fd")
    try link("12abc/fd/3", "socket:[4242]")
    try link("self", "100")
    return root
}

@Test func fakeProcTargetedLowFd() throws {
    let root = try makeFakeProc()
    defer { try? FileManager.default.removeItem(atPath: root) }

    let scan = ProcessScanner.scan(inodes: [4242], procRoot: root)
    // Pass 1 reads every process's low fds: both holders of a shared low-fd socket are named.
    #expect(scan.owners == [4242: [100, 150]])
    let record = try #require(scan.processes[100])
    #expect(record.name == "fakeproc")
    #expect(record.command == "/usr/bin/fake --port 4242")
    #expect(record.uid == 1000)
    #expect(record.user == (ProcessScanner.userName(uid: 1000) ?? "1000"))
    #expect(record.unit == "fake.service")
    #expect(record.container == nil)
    #expect(scan.unreadableProcesses == 0)
    #expect(scan.notes.isEmpty)
}

@Test func fakeProcTargetedHighFdAndMissing() throws {
    let root = try makeFakeProc()
    defer { try? FileManager.default.removeItem(atPath: root) }

    // 777 is only on high fds: found by the listing; 5 is nowhere: the scan still ends.
    let scan = ProcessScanner.scan(inodes: [777, 5], procRoot: root)
    #expect(scan.owners[777]?.first == 100)
    #expect(scan.owners[5] == nil)
    #expect(scan.processes[100]?.name == "fakeproc")
}

@Test func fakeProcSharedSocketMetInBothPasses() throws {
    let root = try makeFakeProc()
    defer { try? FileManager.default.removeItem(atPath: root) }

    // 5 is never found, so both passes run to the end: 4242 is met on 100's fd 3 and 150's fd 5
    // in pass 1, then again on 100's fd 40 in pass 2, and must list each pid once.
    let scan = ProcessScanner.scan(inodes: [4242, 5], procRoot: root)
    #expect(scan.owners == [4242: [100, 150]])
    #expect(Set(scan.processes.keys) == [100, 150])
}

@Test func fakeProcFullScan() throws {
    let root = try makeFakeProc()
    defer { try? FileManager.default.removeItem(atPath: root) }

    let scan = ProcessScanner.scan(inodes: nil, procRoot: root)
    #expect(scan.owners == [4242: [100, 150], 777: [100, 300]])
    #expect(scan.processes[100]?.unit == "fake.service")
    // 300 vanished before its details could be read: it stays an owner, without a record.
    #expect(scan.processes[300] == nil)
    #expect(scan.processes(owning: 777).map(\.pid) == [100])
    #expect(scan.processes(owning: 4242).map(\.name) == ["fakeproc", "child"])
    #expect(scan.processes[150]?.command == "[child]")
    #expect(ProcessScanner.record(pid: 100, procRoot: root)?.name == "fakeproc")
    #expect(ProcessScanner.record(pid: 200, procRoot: root) == nil)
}

// MARK: - Parsers

@Test func socketInodeParsing() {
    func inode(_ text: String) -> UInt64? {
        Array(text.utf8).withUnsafeBytes { ProcessScanner.socketInode($0) }
    }
    #expect(inode("socket:[4242]") == 4242)
    #expect(inode("socket:[18446744073709551615]") == UInt64.max)
    #expect(inode("socket:[18446744073709551616]") == nil)
    #expect(inode("socket:[]") == nil)
    #expect(inode("socket:[12x]") == nil)
    #expect(inode("socket:[12") == nil)
    #expect(inode("pipe:[4242]") == nil)
    #expect(inode("/tmp/socket:[1]") == nil)
    #expect(inode("") == nil)
}

@Test func decimalNames() {
    func parse(_ text: String) -> Int32? {
        text.withCString { ProcessScanner.parseDecimal($0) }
    }
    #expect(parse("0") == 0)
    #expect(parse("4194304") == 4194304)
    #expect(parse("2147483647") == Int32.max)
    #expect(parse("2147483648") == nil)
    #expect(parse("99999999999") == nil)
    #expect(parse(".") == nil)
    #expect(parse("") == nil)
    #expect(parse("12a") == nil)

    let buffer = UnsafeMutablePointer<CChar>.allocate(capacity: 16)
    defer { buffer.deallocate() }
    for value: Int32 in [0, 7, 15, 500, Int32.max] {
        let n = ProcessScanner.writeDecimal(value, buffer)
        buffer[n] = 0
        #expect(String(cString: buffer) == String(value))
    }
}

@Test func statusAndCmdline() {
    #expect(ProcessScanner.realUid(status: Array("Name:\tx\nUid:\t1000\t0\t0\t0\n".utf8)) == 1000)
    #expect(ProcessScanner.realUid(status: Array("Uid:\t0\t0\t0\t0".utf8)) == 0)
    #expect(ProcessScanner.realUid(status: Array("Name:\tx\nGid:\t5\n".utf8)) == nil)
    #expect(ProcessScanner.realUid(status: Array("Uid:\tnope\n".utf8)) == nil)
    #expect(ProcessScanner.realUid(status: []) == nil)
    #expect(ProcessScanner.commandLine(Array("a\0b c\0d\0".utf8)) == "a b c d")
    #expect(ProcessScanner.commandLine(Array("nginx: worker process".utf8)) == "nginx: worker process")
    #expect(ProcessScanner.commandLine([]) == "")
}

private let id64 = "4f6c1a0e9b2d3c5a7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d"

struct CgroupCase: Sendable, CustomTestStringConvertible {
    var label: String
    var text: String
    var unit: String?
    var container: String?
    var testDescription: String { label }
}

private let cgroupCases: [CgroupCase] = [
    .init(label: "v2 service", text: "0::/system.slice/nginx.service\n", unit: "nginx.service"),
    .init(label: "v2 delegated subgroup", text: "0::/system.slice/app.service/worker\n", unit: "app.service"),
    .init(label: "init", text: "0::/init.scope\n", unit: "init.scope"),
    .init(label: "v1 hybrid", text: """
        12:pids:/system.slice/ssh.service
        11:cpu,cpuacct:/system.slice/ssh.service
        4:memory:/system.slice/ssh.service
        1:name=systemd:/system.slice/ssh.service
        0::/system.slice/ssh.service
        """, unit: "ssh.service"),
    .init(label: "v1 legacy, controllers at root", text: """
        5:cpu,cpuacct:/
        4:pids:/
        1:name=systemd:/system.slice/cron.service
        """, unit: "cron.service"),
    .init(label: "user unit", text: "0::/user.slice/user-1000.slice/user@1000.service/app.slice/foo.service\n", unit: "foo.service"),
    .init(label: "session scope", text: "0::/user.slice/user-1000.slice/session-3.scope\n", unit: "session-3.scope"),
    .init(label: "docker systemd driver", text: "0::/system.slice/docker-\(id64).scope\n", container: id64),
    .init(label: "docker cgroupfs v1", text: """
        12:pids:/docker/\(id64)
        4:memory:/docker/\(id64)
        1:name=systemd:/docker/\(id64)
        0::/
        """, container: id64),
    .init(label: "docker v1, id only in a controller", text: """
        4:memory:/docker/\(id64)
        1:cpu:/
        """, container: id64),
    .init(label: "systemd inside docker", text: "0::/system.slice/docker-\(id64).scope/system.slice/nginx.service\n",
          unit: "nginx.service", container: id64),
    .init(label: "kubepods containerd", text:
        "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1f2e3d4c_5b6a_7980_a1b2_c3d4e5f6a7b8.slice/cri-containerd-\(id64).scope\n",
          container: id64),
    .init(label: "kubepods cri-o", text:
        "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1f2e.slice/crio-\(id64).scope\n",
          container: id64),
    .init(label: "kubepods cgroupfs", text: "0::/kubepods/burstable/pod1f2e3d4c-5b6a-7980-a1b2-c3d4e5f6a7b8/\(id64)\n",
          container: id64),
    .init(label: "podman rootful", text: "0::/machine.slice/libpod-\(id64).scope/container\n", container: id64),
    .init(label: "podman rootless", text:
        "0::/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-\(id64).scope/container\n",
          container: id64),
    .init(label: "podman conmon", text: "0::/machine.slice/libpod-conmon-\(id64).scope\n",
          unit: "libpod-conmon-\(id64).scope"),
    .init(label: "short hex is no container", text: "0::/system.slice/docker-abc123.scope\n", unit: "docker-abc123.scope"),
    .init(label: "cgroup namespace root", text: "0::/\n"),
    .init(label: "empty", text: ""),
    .init(label: "garbage", text: "no colons here\n::\n\u{0}\n"),
]

@Test(arguments: cgroupCases)
func cgroupParsing(_ c: CgroupCase) {
    let parsed = ProcessScanner.parseCgroup(c.text)
    #expect(parsed.unit == c.unit)
    #expect(parsed.container == c.container)
}

@Test func cgroupFixtureFile() throws {
    // /proc/PID/cgroup as a docker container's process shows it on a cgroup v1 host.
    let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Fixtures/cgroup-docker-v1.txt").path
    let text = try #require(readFileString(path))
    let parsed = ProcessScanner.parseCgroup(text)
    #expect(parsed.container == "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90")
    #expect(parsed.unit == nil)
}

// MARK: - What blocked a process

@Test func hidepidIsReadFromTheProcMount() {
    let mountinfo = """
    21 1 8:1 / / rw,relatime - ext4 /dev/root rw
    22 21 0:21 / /proc rw,nosuid,relatime - proc proc rw,hidepid=invisible,subset=pid
    23 21 0:22 / /sys rw - sysfs sysfs rw
    """
    #expect(ProcAccess.hidepidOption(mountinfo: mountinfo, mountPoint: "/proc") == "hidepid=invisible")
    #expect(ProcAccess.hidepidOption(mountinfo: mountinfo, mountPoint: "/sys") == nil)
    #expect(ProcAccess.hidepidOption(mountinfo: "22 21 0:21 / /proc rw - proc proc rw,hidepid=0", mountPoint: "/proc") == nil)
    #expect(ProcAccess.hidepidOption(mountinfo: "22 21 0:21 / /proc rw shared:5 - proc proc rw,hidepid=2", mountPoint: "/proc") == "hidepid=2")
    #expect(ProcAccess.hexField("CapEff:", in: Array("Name:\tx\nCapEff:\t000001ffffffffff\n".utf8)) == 0x1ff_ffff_ffff)
}

/// Each cause is named for what it is: only the unprivileged case advises root.
@Test func blocksExplainTheirCause() {
    #expect(InspectionBlock.otherUser.explanation(count: 3).contains("needs root or CAP_SYS_PTRACE"))
    #expect(InspectionBlock.otherUser.explanation(count: 1).hasPrefix("1 process "))
    for block in [InspectionBlock.missingPtraceCapability, .otherUserNamespace, .refused(errno: EACCES)] {
        #expect(!block.explanation(count: 2).contains("needs root"))
    }
    #expect(InspectionBlock.refused(errno: EACCES).explanation(count: 1).contains("EACCES"))
    #expect(InspectionBlock.otherUserNamespace.explanation(count: 1).contains("user namespace"))
    #expect(InspectionBlock.hiddenByProcMount("hidepid=invisible").explanation(count: 0).contains("hidepid=invisible"))
}

/// Notes and causes accumulate: one never replaces another.
@Test func scanNotesAccumulate() throws {
    var scan = ProcessScan(blocked: [.otherUser: 4, .hiddenByProcMount("hidepid=2"): 0])
    scan.addNote("first")
    scan.addNote("second")
    scan.addNote("first")
    #expect(scan.notes == ["first", "second"])
    let problem = try #require(scan.permissionProblem)
    #expect(problem.kind == .permission)
    #expect(problem.message.contains("CAP_SYS_PTRACE") && problem.message.contains("hidepid=2"))
    #expect(ProcessScan().permissionProblem == nil)

    // The sampler's cache keeps the notes of every lookup, not only the last one's.
    var cache = OwnerCache()
    _ = cache.lookup([UInt64.max - 1], now: 1)
    cache.notes.append("from an earlier lookup")
    let later = cache.lookup([UInt64.max - 2], now: 2)
    #expect(later.notes.contains("from an earlier lookup"))
}

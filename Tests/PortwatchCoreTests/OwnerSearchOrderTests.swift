// The order in which the bounded owner search reads busy processes above fd 1023: the processes
// living in the namespaces of the still-unowned sockets first, round by round, then the rest.
// A fake proc root gives each pid a `ns/net` whose inode stands for its network namespace.

import Foundation
import Glibc
import Testing
@testable import PortwatchCore

@Test func busyProcessesOfUnownedSocketsNamespacesAreReadFirstRoundByRound() throws {
    let root = NSTemporaryDirectory() + "pw-nsorder-\(getpid())"
    let fm = FileManager.default
    try? fm.removeItem(atPath: root)
    try fm.createDirectory(atPath: root, withIntermediateDirectories: true)
    defer { try? fm.removeItem(atPath: root) }
    var inode: [String: UInt64] = [:]
    for ns in ["a", "b", "c"] {
        try "".write(toFile: "\(root)/ns-\(ns)", atomically: false, encoding: .utf8)
        var st = stat()
        try #require(stat("\(root)/ns-\(ns)", &st) == 0)
        inode[ns] = UInt64(st.st_ino)
    }
    // pid → namespace: 10, 11 in a (the host, say); 13, 14 in b (a container); 12 in c.
    for (pid, ns) in [(10, "a"), (11, "a"), (12, "c"), (13, "b"), (14, "b")] {
        try fm.createDirectory(atPath: "\(root)/\(pid)/ns", withIntermediateDirectories: true)
        try fm.createSymbolicLink(atPath: "\(root)/\(pid)/ns/net", withDestinationPath: "\(root)/ns-\(ns)")
    }
    let procfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    try #require(procfd >= 0)
    defer { close(procfd) }

    var walk = FdWalk(procfd: procfd, wanted: [1, 2, 3], sizeIsFdCount: false)
    walk.socketNamespaces = [1: inode["a"]!, 2: inode["b"]!, 3: inode["c"]!]
    _ = walk.owners.add(3, 99)  // c's socket has its owner: c's processes are not worth reading first
    let big: [(pid: Int32, fds: Int)] = [(10, 2000), (11, 3000), (14, 4000), (12, 5000), (13, 9000)]
    // Each namespace's smallest table (10, 14), then each one's second (11, 13), then the rest.
    #expect(walk.namespacesFirst(big).map(\.pid) == [10, 14, 11, 13, 12])

    // Without namespaces known nothing moves: smallest tables first.
    var plain = FdWalk(procfd: procfd, wanted: [1, 2, 3], sizeIsFdCount: false)
    plain.socketNamespaces = [:]
    #expect(plain.namespacesFirst(big).map(\.pid) == [10, 11, 14, 12, 13])
}

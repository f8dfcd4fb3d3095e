#if canImport(Glibc)
import Glibc
#endif

/// The addresses of this host's interfaces (in the calling thread's network namespace).
public func localAddresses() -> Set<IPAddress> {
    var head: UnsafeMutablePointer<ifaddrs>? = nil
    guard getifaddrs(&head) == 0, let first = head else { return [] }
    defer { freeifaddrs(first) }
    var out = Set<IPAddress>()
    var cursor: UnsafeMutablePointer<ifaddrs>? = first
    while let entry = cursor {
        if let sa = entry.pointee.ifa_addr {
            if Int32(sa.pointee.sa_family) == AF_INET {
                sa.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { sin in
                    var a = sin.pointee.sin_addr
                    withUnsafeBytes(of: &a) { if let ip = IPAddress(bytes: $0) { out.insert(ip) } }
                }
            } else if Int32(sa.pointee.sa_family) == AF_INET6 {
                sa.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { sin6 in
                    var a = sin6.pointee.sin6_addr
                    withUnsafeBytes(of: &a) { if let ip = IPAddress(bytes: $0) { out.insert(ip) } }
                }
            }
        }
        cursor = entry.pointee.ifa_next
    }
    return out
}

/// True when every target is loopback or one of this host's own addresses: no network and no
/// other host to be polite to, so the scan may go as fast as the kernel does.
public func allTargetsLocal(_ targets: [ScanTarget]) -> Bool {
    let own = localAddresses()
    return targets.allSatisfy { $0.address.ip.isLoopback || own.contains($0.address.ip) }
}

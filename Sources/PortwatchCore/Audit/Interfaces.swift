#if canImport(Glibc)
import Glibc
#endif

/// One address of a network interface, as getifaddrs(3) reports it.
public struct InterfaceAddress: Sendable, Hashable {
    public var interface: String
    public var address: IPAddress
    /// The interface is up (IFF_UP).
    public var up: Bool
    public var loopback: Bool

    public init(interface: String, address: IPAddress, up: Bool = true, loopback: Bool = false) {
        self.interface = interface
        self.address = address
        self.up = up
        self.loopback = loopback
    }

    /// The addresses of every interface in the calling thread's network namespace.
    public static func current() -> [InterfaceAddress] {
        var head: UnsafeMutablePointer<ifaddrs>? = nil
        guard getifaddrs(&head) == 0 else { return [] }
        defer { freeifaddrs(head) }
        var out: [InterfaceAddress] = []
        var cursor = head
        while let entry = cursor {
            defer { cursor = entry.pointee.ifa_next }
            guard let sa = entry.pointee.ifa_addr else { continue }
            let address: IPAddress?
            switch Int32(sa.pointee.sa_family) {
            case AF_INET:
                address = sa.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { p in
                    withUnsafeBytes(of: p.pointee.sin_addr) { IPAddress(bytes: $0) }
                }
            case AF_INET6:
                address = sa.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { p in
                    withUnsafeBytes(of: p.pointee.sin6_addr) { IPAddress(bytes: $0) }
                }
            default: address = nil
            }
            guard let address else { continue }
            let flags = entry.pointee.ifa_flags
            out.append(InterfaceAddress(interface: String(cString: entry.pointee.ifa_name), address: address,
                                        up: flags & UInt32(IFF_UP) != 0,
                                        loopback: flags & UInt32(IFF_LOOPBACK) != 0))
        }
        return out
    }
}

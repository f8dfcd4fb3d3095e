// Who can reach a listener, from its bound addresses and the host's interfaces: only this
// host (loopback), the networks of one specific address, or every interface (a wildcard).
// A dual-stack `::` (IPV6_V6ONLY off) takes IPv4 connections too; a v6only `[::]` does not.

/// How far a listener reaches, from narrowest to widest.
public enum Exposure: String, Sendable, Hashable, Codable, Comparable {
    /// 127.0.0.0/8 or ::1 only: nothing outside this host (this namespace) can connect.
    case loopback
    /// Specific non-loopback addresses: the networks of those interfaces.
    case address
    /// A wildcard (0.0.0.0, ::): every interface, present and future.
    case any

    private var rank: Int { self == .loopback ? 0 : (self == .address ? 1 : 2) }
    public static func < (a: Exposure, b: Exposure) -> Bool { a.rank < b.rank }
}

/// A listener's reach: exposure, address families and the interfaces it answers on.
public struct ListenerReach: Sendable, Hashable {
    public var exposure: Exposure
    /// Address families connections can come in over (a dual-stack `::` gives both).
    public var families: [PacketFamily]
    /// Interfaces with an address the listener answers on, sorted (`lo` included for wildcards).
    public var interfaces: [String]

    /// The reach of `listeners` on a host whose interfaces have `addresses`.
    public init(listeners: [ListenerInfo], addresses: [InterfaceAddress]) {
        var exposure = Exposure.loopback
        var families = Set<PacketFamily>()
        var interfaces = Set<String>()
        for l in listeners {
            let ip = l.local.address
            var reached: [PacketFamily] = []
            if let mapped = ip.mappedV4 {
                reached = [.ipv4]
                if mapped.isLoopback { interfaces.insert("lo") } else { exposure = max(exposure, .address) }
                interfaces.formUnion(addresses.filter { $0.address == mapped }.map(\.interface))
            } else if ip.isWildcard {
                exposure = .any
                reached = ip.isV6 ? (l.v6only == true ? [.ipv6] : [.ipv4, .ipv6]) : [.ipv4]
                for a in addresses where a.up && reached.contains(a.address.isV6 ? .ipv6 : .ipv4) {
                    interfaces.insert(a.interface)
                }
            } else if ip.isLoopback {
                reached = [ip.isV6 ? .ipv6 : .ipv4]
                interfaces.insert("lo")
            } else {
                exposure = max(exposure, .address)
                reached = [ip.isV6 ? .ipv6 : .ipv4]
                if l.local.scope != 0 {
                    interfaces.insert(interfaceName(l.local.scope))
                } else {
                    interfaces.formUnion(addresses.filter { $0.address == ip }.map(\.interface))
                }
            }
            families.formUnion(reached)
        }
        self.exposure = exposure
        self.families = PacketFamily.allCases.filter(families.contains)
        self.interfaces = interfaces.sorted()
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

// How addresses are written for people, as ss writes them: a dual-stack `::` listener (it
// accepts IPv4 too) is `*`, an IPv6-only one `[::]`, `0.0.0.0` stays `0.0.0.0`, and a
// link-local address keeps its `%zone`, without which it names no interface.

extension IPAddress {
    /// fe80::/10: meaningful only together with an interface.
    public var isLinkLocal: Bool {
        if case .v6(let high, _) = self { return high >> 54 == 0x3fa }
        return false
    }
}

extension Endpoint {
    /// The address with its `%zone` when it has one (`fe80::1%eth0`).
    public var addressText: String {
        guard scope != 0 else { return address.description }
        return "\(address)%\(interfaceName(scope))"
    }

    /// The address of a listening socket: `*` for a dual-stack `::` (v6only false), `[::]` for
    /// an IPv6-only one, `::` when the source could not tell (the /proc/net fallback).
    public func listenAddressText(v6only: Bool?) -> String {
        if case .v6 = address, address.isWildcard, let v6only { return v6only ? "[::]" : "*" }
        return addressText
    }

    /// `listenAddressText` with the port: `*:80`, `[::]:80`, `0.0.0.0:80`, `[fe80::1%eth0]:80`.
    public func listenText(v6only: Bool?) -> String {
        if case .v6 = address, address.isWildcard, v6only == false { return "*:\(port)" }
        return description
    }
}

/// The name of interface `index` in the calling thread's network namespace, or the number.
public func interfaceName(_ index: UInt32) -> String {
    var buffer = [CChar](repeating: 0, count: Int(IF_NAMESIZE) + 1)
    if if_indextoname(index, &buffer) != nil { return String(cString: buffer) }
    return String(index)
}

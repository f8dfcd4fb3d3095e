#if canImport(Glibc)
import Glibc
#endif
import CSockDiag

/// Turns on IP_RECVERR / IPV6_RECVERR: every ICMP error about the socket's packets is queued on
/// it with its type and code, readable with MSG_ERRQUEUE and signalled as EPOLLERR. For TCP this
/// matters on fast paths (veth, loopback): an ICMP error that arrives while connect() still holds
/// the socket is otherwise only a "soft" error, seen when the kernel's SYN retries give up.
func enableICMPErrorQueue(_ fd: Int32, v6: Bool) {
    var one: Int32 = 1
    if v6 {
        setsockopt(fd, Int32(IPPROTO_IPV6), IPV6_RECVERR, &one, socklen_t(MemoryLayout<Int32>.size))
    } else {
        setsockopt(fd, Int32(IPPROTO_IP), IP_RECVERR, &one, socklen_t(MemoryLayout<Int32>.size))
    }
}

/// Reads one queued ICMP error for a socket with the error queue on: port-unreachable is closed, every
/// other unreachable (admin-prohibited, host, net) filtered, as nmap classifies them; nil when
/// the queue is empty.
func readICMPError(_ fd: Int32, v6: Bool) -> (RemoteState, ScanReason)? {
    var data = [UInt8](repeating: 0, count: 256)
    var control = [UInt8](repeating: 0, count: 512)
    var name = sockaddr_storage()
    return data.withUnsafeMutableBytes { dataRaw in
        control.withUnsafeMutableBytes { controlRaw in
            withUnsafeMutablePointer(to: &name) { namePtr in
                var iov = iovec(iov_base: dataRaw.baseAddress, iov_len: dataRaw.count)
                return withUnsafeMutablePointer(to: &iov) { iovPtr in
                    var msg = msghdr()
                    msg.msg_name = UnsafeMutableRawPointer(namePtr)
                    msg.msg_namelen = socklen_t(MemoryLayout<sockaddr_storage>.size)
                    msg.msg_iov = iovPtr
                    msg.msg_iovlen = 1
                    msg.msg_control = controlRaw.baseAddress
                    msg.msg_controllen = controlRaw.count
                    guard recvmsg(fd, &msg, Int32(MSG_ERRQUEUE) | Int32(MSG_DONTWAIT)) >= 0 else { return nil }
                    return parseExtendedError(UnsafeRawBufferPointer(rebasing: controlRaw.prefix(Int(msg.msg_controllen))), v6: v6)
                }
            }
        }
    }
}

/// Walks the control messages for IP_RECVERR / IPV6_RECVERR and reads the `sock_extended_err`
/// in it (ee_errno u32, ee_origin u8, ee_type u8, ee_code u8, ...).
func parseExtendedError(_ control: UnsafeRawBufferPointer, v6: Bool) -> (RemoteState, ScanReason)? {
    let headerSize = MemoryLayout<cmsghdr>.size
    var offset = 0
    while offset + headerSize <= control.count {
        let length = Int(control.loadUnaligned(fromByteOffset: offset, as: Int.self))
        let level = control.loadUnaligned(fromByteOffset: offset + MemoryLayout<Int>.size, as: Int32.self)
        let type = control.loadUnaligned(fromByteOffset: offset + MemoryLayout<Int>.size + 4, as: Int32.self)
        guard length >= headerSize, offset + length <= control.count else { return nil }
        let isRecvErr = (level == Int32(IPPROTO_IP) && type == IP_RECVERR) || (level == Int32(IPPROTO_IPV6) && type == IPV6_RECVERR)
        if isRecvErr && length >= headerSize + 8 {
            let body = offset + headerSize
            let origin = control[body + 4], icmpType = control[body + 5], code = control[body + 6]
            return classifyICMP(origin: origin, type: icmpType, code: code)
        }
        offset += (length + MemoryLayout<Int>.size - 1) & ~(MemoryLayout<Int>.size - 1)
    }
    return nil
}

/// SO_EE_ORIGIN_ICMP (2) and SO_EE_ORIGIN_ICMP6 (3) type/code to a port state.
func classifyICMP(origin: UInt8, type: UInt8, code: UInt8) -> (RemoteState, ScanReason) {
    switch (origin, type, code) {
    case (2, 3, 3), (3, 1, 4): return (.closed, .icmpPortUnreachable)
    case (2, 3, 9), (2, 3, 10), (2, 3, 13), (3, 1, 1): return (.filtered, .icmpAdminProhibited)
    case (2, 3, 1), (3, 1, 3): return (.filtered, .icmpHostUnreachable)
    case (2, 3, 0), (3, 1, 0): return (.filtered, .icmpNetUnreachable)
    default: return (.filtered, .icmpOther)
    }
}

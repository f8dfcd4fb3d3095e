#if canImport(Glibc)
import Glibc
#endif

/// A sock_diag source for a sampler that skips the kernel's walk of its TCP tables when the
/// namespace's counters prove that no TCP socket changed since the last walk.
///
/// Why: the kernel keeps one established table (262,144 buckets here) and one bind table for
/// every network namespace that did not get its own (`net.ipv4.tcp_child_ehash_entries`), and a
/// TCP dump in any namespace walks both whole: ~4-5 ms of kernel time per namespace however few
/// sockets it holds. A daemon sampling 50 idle containers paid that 50 times a second.
///
/// When it is safe: nothing a sample reports of a non-listening TCP socket changes without one
/// of these moving (`SystemCounters.tcpQuietFingerprint`): a segment in or out (bytes, states,
/// resets, retransmits, keepalives, SYNs creating half-open sockets), a socket hashed or
/// unhashed (`inuse`: connect, close, listen), a TIME_WAIT socket expiring (`tw`), a socket
/// created (`sockets: used`, before a bind leaves it bound-only), a connection accepted (a
/// listener's accept queue shorter than at the walk). Listeners (their accept queue drains with
/// no segment) are then dumped fresh from the cheap listening table, and UDP fresh too. Only
/// when the whole namespace is quiet (`activity`: no packet or drop on any interface, no socket
/// made, hashed or bound) and the last listing held no queued connection or datagram are the
/// listeners and UDP sockets reused as well. The fingerprints are read *before* each dump, so a
/// change during a walk shows as a change at the next sample. What still slips past them is
/// bounded by `maxAge` (everything read again at least that often): a half-open socket expiring
/// after its last SYN-ACK retry, a socket created before the last walk and bound (TCP) or
/// connected (UDP) after it, a retransmission dropped by an output firewall rule (counted late,
/// never lost: the counters are cumulative).
// @unchecked Sendable: a sampler (the only user) drives it from one task at a time; `fingerprint`
// is set and the dump read on that task.
public final class QuietReplaySource: SocketSource, @unchecked Sendable {
    public let inner: any SocketSource
    /// Longest time a walk's records are reused.
    public let maxAge: Double
    /// The TCP fingerprint read just before the next dump; nil forces a walk. Setting it
    /// starts a new snapshot.
    public var fingerprint: [Int64]? { didSet { listeners = nil; range = nil } }
    /// The namespace's ephemeral range, read once per snapshot (a sysctl change shows at the next).
    private var range: EphemeralRange?
    /// The whole namespace's activity fingerprint (`SystemCounters.activityFingerprint`) read
    /// with `fingerprint`; nil when unknown.
    public var activity: [Int64]?
    /// The last listeners-only dump: its query, the activity it was read under, its records
    /// and the whole UDP dump taken with it.
    private var lastListing: (query: SocketQuery, activity: [Int64], records: [SocketRecord], udp: [SocketRecord]?, at: Double)?
    /// Listeners-only dumps answered without the kernel (for tests and benchmarks).
    public private(set) var listingReplays = 0
    /// The listeners dumped for this snapshot (its listeners-only dump, asked with counters),
    /// so that a replay need not dump them again.
    private var listeners: (query: SocketQuery, records: [SocketRecord], udp: [SocketRecord]?)?
    private var walked: (fingerprint: [Int64], query: SocketQuery, tcp: [SocketRecord], queues: [UInt64: UInt32],
                         at: Double)?
    /// Dumps answered from the last walk (for tests and benchmarks).
    public private(set) var replays = 0
    /// Dumps that walked the kernel's tables.
    public private(set) var walks = 0

    public init(_ inner: any SocketSource, maxAge: Double = 15) {
        self.inner = inner
        self.maxAge = maxAge
    }

    public var name: String { inner.name }
    public var notes: [String] { inner.notes }
    public var ephemeralRange: EphemeralRange {
        if let range { return range }
        let now = inner.ephemeralRange
        range = now
        return now
    }

    public func sockets(_ query: SocketQuery) throws(PortwatchError) -> [SocketRecord] {
        let now = monotonicSeconds()
        if query.listenersOnly {
            guard fingerprint != nil else { return try inner.sockets(query) }
            // Nothing moved in the whole namespace since the last listing, and it held no queued
            // connection or datagram (a queue can drain without a packet, never fill): the last
            // listing is what a dump would say now.
            if let activity, let last = lastListing, last.activity == activity, last.query == query,
               now - last.at < maxAge, willReplay(now: now), last.udp != nil || !query.protocols.contains(.udp),
               last.records.allSatisfy({ $0.receiveQueue == 0 }), (last.udp ?? []).allSatisfy({ $0.receiveQueue == 0 }) {
                listeners = (query, last.records, last.udp)
                listingReplays += 1
                return last.records
            }
            // With counters (a listener's drops and queues), so that a replay can use them; and
            // when this snapshot will replay, UDP whole (few sockets, and one walk of the UDP
            // table instead of two: the replay takes its UDP sockets from here).
            var tcp = query
            tcp.protocols = query.protocols.intersection([.tcp])
            tcp.withCounters = true
            var records = tcp.protocols.isEmpty ? [] : try inner.sockets(tcp)
            var udp: [SocketRecord]? = nil
            if query.protocols.contains(.udp) {
                var all = query
                all.protocols = [.udp]
                all.listenersOnly = false
                all.withCounters = true
                if willReplay(now: now) {
                    udp = try inner.sockets(all)
                    records.append(contentsOf: udp!.filter(\.isListening))
                } else {
                    all.listenersOnly = true
                    records.append(contentsOf: try inner.sockets(all))
                }
            }
            listeners = (query, records, udp)
            lastListing = activity.map { (query, $0, records, udp, now) }
            return records
        }
        guard query.protocols.contains(.tcp) else { return try inner.sockets(query) }
        if willReplay(now: now), let last = walked, last.query == query {
            var records: [SocketRecord] = []
            if query.states & (1 << UInt32(SocketState.listen.rawValue)) != 0 {
                records = try tcpListeners(query)
            }
            // An accept() moves no counter, but gives the accepted connection its inode (and so
            // its owner): any listener whose queue is not what it was at the walk has accepted
            // since (with no packet in, a queue only drains), and the namespace is walked.
            let queues = Self.acceptQueues(records)
            if queues == last.queues {
                records.append(contentsOf: last.tcp)
                if query.protocols.contains(.udp) { records.append(contentsOf: try udpSockets(query)) }
                replays += 1
                return records
            }
        }
        let all = try inner.sockets(query)
        walks += 1
        if let fingerprint {
            walked = (fingerprint, query, all.filter { $0.proto == .tcp && $0.state != .listen },
                      Self.acceptQueues(all), now)
        } else {
            walked = nil
        }
        return all
    }

    /// Each TCP listener's accept queue, by socket cookie.
    private static func acceptQueues(_ records: [SocketRecord]) -> [UInt64: UInt32] {
        var out: [UInt64: UInt32] = [:]
        for r in records where r.proto == .tcp && r.state == .listen { out[r.cookie] = r.receiveQueue }
        return out
    }

    /// Whether this snapshot's TCP dump will be answered from the last walk (its query aside).
    private func willReplay(now: Double) -> Bool {
        guard let fingerprint, let last = walked else { return false }
        return last.fingerprint == fingerprint && now - last.at < maxAge
    }

    /// Whether `r` passes a dump's port filter, as the kernel's filter decides.
    private static func passes(_ r: SocketRecord, _ filter: PortFilter?) -> Bool {
        guard let filter else { return true }
        return filter.local.contains { $0.contains(r.local.port) } || filter.peer.contains { $0.contains(r.peer.port) }
    }

    /// Whether this snapshot's listeners-only dump can stand for `query`'s (same families and
    /// states, no port filter of its own).
    private func sameListing(_ asked: SocketQuery, _ query: SocketQuery) -> Bool {
        asked.families == query.families && asked.ports == nil && asked.states == query.states
    }

    /// The TCP listeners `query` would dump: this snapshot's listeners-only dump when it can
    /// stand for it (the port filter applied here, as the kernel would), else a dump of the
    /// listening table.
    private func tcpListeners(_ query: SocketQuery) throws(PortwatchError) -> [SocketRecord] {
        if let (asked, records, _) = listeners, sameListing(asked, query), asked.protocols.contains(.tcp) {
            let filter = query.ports?[.tcp]
            if query.ports != nil && filter == nil { return [] }
            return records.filter { $0.proto == .tcp && $0.state == .listen && Self.passes($0, filter) }
        }
        var listening = query
        listening.protocols = [.tcp]
        listening.listenersOnly = true
        return try inner.sockets(listening)
    }

    /// The UDP sockets `query` would dump: this snapshot's whole UDP dump, filtered, when there
    /// is one; else a dump.
    private func udpSockets(_ query: SocketQuery) throws(PortwatchError) -> [SocketRecord] {
        if let (asked, _, udp) = listeners, let udp, sameListing(asked, query) {
            let filter = query.ports?[.udp]
            if query.ports != nil && filter == nil { return [] }
            return udp.filter { Self.passes($0, filter) }
        }
        var all = query
        all.protocols = [.udp]
        return try inner.sockets(all)
    }

    private func monotonicSeconds() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
}

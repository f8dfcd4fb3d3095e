import Testing
@testable import PortwatchCore

/// Synthetic sockets for the tracker's bookkeeping; the real kernel is exercised in the CLI tests.
private func conn(_ cookie: UInt64, local: UInt16, peer: UInt16, rx: UInt64, tx: UInt64,
                  state: SocketState = .established, rtt: UInt32 = 50) -> SocketRecord {
    SocketRecord(proto: .tcp, state: state,
                 local: Endpoint(address: .v4(0x7f00_0001), port: local),
                 peer: Endpoint(address: .v4(0x7f00_0001), port: peer),
                 inode: cookie, cookie: cookie,
                 tcp: TCPStats(bytesAcked: tx, bytesReceived: rx, bytesSent: tx, segmentsIn: 1, segmentsOut: 1, rttMicros: rtt),
                 drops: 0)
}

private func listener(_ port: UInt16, drops: UInt32 = 0) -> SocketRecord {
    SocketRecord(proto: .tcp, state: .listen, local: Endpoint(address: .anyV4, port: port),
                 peer: Endpoint(address: .anyV4, port: 0), inode: 1, cookie: 1, receiveQueue: 0, sendQueue: 128,
                 tcp: TCPStats(), drops: drops)
}

private func snapshot(_ sockets: [SocketRecord], at time: Double) -> PortSnapshot {
    PortSnapshot(takenAt: time, source: "test", sockets: sockets,
                 ports: summarizePorts(sockets, includeOutgoing: true, ephemeral: EphemeralRange(32768...60999)),
                 owners: [:], processes: [:], notes: [],
                 classifier: PortClassifier(sockets: sockets, ephemeral: EphemeralRange(32768...60999)))
}

private let web = PortKey(role: .local, proto: .tcp, port: 8080)

@Suite struct TrafficTrackerTests {
    @Test func longLivedConnectionCountsOnlyItsGrowth() {
        var tracker = TrafficTracker()
        let ephemeral = EphemeralRange(32768...60999)
        let c = PortClassifier(sockets: [listener(8080)], ephemeral: ephemeral)
        tracker.start(snapshot([listener(8080), conn(10, local: 8080, peer: 40000, rx: 1000, tx: 0)], at: 0), system: .init(), classifier: c)
        let report = tracker.advance(snapshot([listener(8080), conn(10, local: 8080, peer: 40000, rx: 5000, tx: 700)], at: 1),
                                     destroyed: DestroyBatch(sockets: [], overflows: 0), system: .init(), classifier: c)
        #expect(report.activity(web).traffic.bytesReceived == 4000)
        #expect(report.activity(web).traffic.bytesSent == 700)
        #expect(report.activity(web).opened == 0)
        #expect(report.seconds == 1)
    }

    @Test func connectionOpenedAndClosedBetweenSamplesIsCountedOnce() {
        var tracker = TrafficTracker()
        let c = PortClassifier(sockets: [listener(8080)], ephemeral: EphemeralRange(32768...60999))
        tracker.start(snapshot([listener(8080)], at: 0), system: .init(), classifier: c)
        let closed = conn(20, local: 8080, peer: 40001, rx: 300, tx: 20, state: .close)
        let report = tracker.advance(snapshot([listener(8080)], at: 1),
                                     destroyed: DestroyBatch(sockets: [closed], overflows: 0), system: .init(), classifier: c)
        #expect(report.activity(web).traffic.bytesReceived == 300)
        #expect(report.activity(web).opened == 1)
        #expect(report.activity(web).closed == 1)
        // The next window does not count it again.
        let next = tracker.advance(snapshot([listener(8080)], at: 2),
                                   destroyed: DestroyBatch(sockets: [], overflows: 0), system: .init(), classifier: c)
        #expect(next.activity(web).traffic.bytesReceived == 0)
    }

    @Test func socketSeenInADumpAndThenDestroyedIsNotDoubleCounted() {
        var tracker = TrafficTracker()
        let c = PortClassifier(sockets: [listener(8080)], ephemeral: EphemeralRange(32768...60999))
        tracker.start(snapshot([listener(8080), conn(30, local: 8080, peer: 40002, rx: 100, tx: 0)], at: 0), system: .init(), classifier: c)
        // The dump still shows it (rx 400), but its destroy event (rx 500) arrived too: the event wins.
        let report = tracker.advance(
            snapshot([listener(8080), conn(30, local: 8080, peer: 40002, rx: 400, tx: 0)], at: 1),
            destroyed: DestroyBatch(sockets: [conn(30, local: 8080, peer: 40002, rx: 500, tx: 0, state: .close)], overflows: 0),
            system: .init(), classifier: c)
        #expect(report.activity(web).traffic.bytesReceived == 400)
        #expect(report.activity(web).closed == 1)
        #expect(tracker.trackedSockets == 1)  // the listener only: the closed socket is forgotten
    }

    @Test func lateDestroyEventStillCountsTheTail() {
        var tracker = TrafficTracker()
        let c = PortClassifier(sockets: [listener(8080)], ephemeral: EphemeralRange(32768...60999))
        tracker.start(snapshot([listener(8080), conn(40, local: 8080, peer: 40003, rx: 100, tx: 0)], at: 0), system: .init(), classifier: c)
        // Gone from the dump, event not delivered yet: nothing is lost, nothing is guessed.
        let gap = tracker.advance(snapshot([listener(8080)], at: 1), destroyed: DestroyBatch(sockets: [], overflows: 0),
                                  system: .init(), classifier: c)
        #expect(gap.activity(web).traffic.bytesReceived == 0)
        let late = tracker.advance(snapshot([listener(8080)], at: 2),
                                   destroyed: DestroyBatch(sockets: [conn(40, local: 8080, peer: 40003, rx: 900, tx: 0, state: .close)], overflows: 0),
                                   system: .init(), classifier: c)
        #expect(late.activity(web).traffic.bytesReceived == 800)
        #expect(late.activity(web).closed == 1)
        #expect(late.activity(web).opened == 0)
    }

    @Test func failedOutgoingAttemptsAreGroupedByRemotePort() {
        var tracker = TrafficTracker()
        let c = PortClassifier(sockets: [], ephemeral: EphemeralRange(32768...60999))
        tracker.start(snapshot([], at: 0), system: .init(), classifier: c)
        var timedOut = conn(50, local: 41000, peer: 5432, rx: 0, tx: 0, state: .close, rtt: 0)
        timedOut.tcp?.segmentsIn = 0
        let refused = conn(51, local: 41001, peer: 5432, rx: 0, tx: 0, state: .close, rtt: 0)
        let report = tracker.advance(snapshot([], at: 1), destroyed: DestroyBatch(sockets: [timedOut, refused], overflows: 0),
                                     system: .init(), classifier: c)
        let db = report.activity(PortKey(role: .remote, proto: .tcp, port: 5432))
        #expect(db.connectTimeouts == 1)
        #expect(db.connectRefused == 1)
    }

    @Test func listenerDropsAreListenDrops() {
        var tracker = TrafficTracker()
        let c = PortClassifier(sockets: [listener(8080)], ephemeral: EphemeralRange(32768...60999))
        tracker.start(snapshot([listener(8080, drops: 3)], at: 0), system: .init(), classifier: c)
        let report = tracker.advance(snapshot([listener(8080, drops: 10)], at: 1), destroyed: nil, system: .init(), classifier: c)
        #expect(report.activity(web).listenDrops == 7)
        #expect(report.activity(web).traffic.drops == 0)
        #expect(report.notes.contains { $0.contains("not counted") })
    }

    @Test func overflowIsReported() {
        var tracker = TrafficTracker()
        tracker.start(snapshot([], at: 0), system: .init())
        let report = tracker.advance(snapshot([], at: 1), destroyed: DestroyBatch(sockets: [], overflows: 2), system: .init())
        #expect(report.eventOverflows == 2)
        #expect(report.notes.contains { $0.contains("ENOBUFS") })
    }

    @Test func systemCountersAreDeltas() {
        let text = "Tcp: RtoAlgorithm AttemptFails EstabResets\nTcp: 1 10 4\nUdp: InDatagrams NoPorts\nUdp: 5 2\n"
        func counters(_ text: String) -> SystemCounters {
            var values: [String: Int64] = [:]
            SystemCounters.parseWantedPairs(Array(text.utf8), into: &values)
            return SystemCounters(values: values)
        }
        let before = counters(text)
        let after = counters("Tcp: RtoAlgorithm AttemptFails EstabResets\nTcp: 1 13 4\nUdp: InDatagrams NoPorts\nUdp: 9 7\n")
        let deltas = Dictionary(uniqueKeysWithValues: after.errorDeltas(since: before))
        #expect(deltas["attempt_fails"] == 3)
        #expect(deltas["estab_resets"] == 0)
        #expect(deltas["udp_no_ports"] == 5)
        var snmp6: [String: Int64] = [:]
        SystemCounters.parseWantedSnmp6(Array("Udp6NoPorts   \t 12\nIp6InReceives 3\n".utf8), into: &snmp6)
        #expect(snmp6["Udp6.NoPorts"] == 12)
    }
}

import Testing
@testable import PortwatchCore

// The detectors on recorded packet sequences: what the capture thread would feed them, with the
// kernel's timestamps, and the sample times at which they are drained.

private func ip(_ text: String) -> IPAddress { IPAddress(text)! }
private func ep(_ a: String, _ p: UInt16) -> Endpoint { Endpoint(address: ip(a), port: p) }

private let here = "10.9.0.1"
private let scanner = "10.9.0.2"
private let t0 = 1_800_000_000.0

private func syn(from a: String, _ sport: UInt16 = 40000, to port: UInt16, flags: TCPFlags = .syn) -> CapturedPacket {
    .tcp(source: ep(a, sport), destination: ep(here, port), flags: flags, sequence: 1, acknowledgment: 0)
}

private struct Replay {
    var detectors: PacketDetectors
    var events: [SecurityEvent] = []

    init(_ settings: DetectorSettings = DetectorSettings()) { detectors = PacketDetectors(settings: settings) }

    mutating func feed(_ packet: CapturedPacket, _ direction: PacketDirection = .received, at time: Double) {
        detectors.observe(packet, direction: direction, time: time)
    }

    @discardableResult
    mutating func drain(at time: Double) -> PacketFindings {
        let f = detectors.drain(now: time)
        events += f.events
        return f
    }

    func of(_ kind: SecurityEventKind, _ phase: DetectionPhase) -> [SecurityEvent] {
        events.filter { $0.kind == kind && $0.phase == phase }
    }
}

@Suite struct PortScanDetectionTests {
    @Test func aSynScanIsOneDetectionThenOneEnd() {
        var r = Replay()
        let ports = (0..<40).map { UInt16(2000 + ($0 * 37) % 100) }  // shuffled, distinct
        for (i, port) in ports.enumerated() {
            r.feed(syn(from: scanner, to: port), at: t0 + Double(i) * 0.01)
            if i % 10 == 9 { r.drain(at: t0 + Double(i) * 0.01) }  // samples while it goes on
        }
        let started = r.of(.scanDetected, .started)
        #expect(started.count == 1)
        #expect(started.first?.source == ip(scanner))
        #expect(started.first?.scanKind == .syn)
        #expect(started.first?.portsTouched == 20)
        #expect(started.first?.firstPort == ports[0])
        #expect(started.first?.lastPort == ports[19])
        #expect(r.drain(at: t0 + 1).active.count == 1)
        #expect(r.of(.scanDetected, .ended).isEmpty)  // not quiet for a window yet
        r.drain(at: t0 + 0.4 + 10)
        let ended = r.of(.scanDetected, .ended)
        #expect(ended.count == 1)
        #expect(ended.first?.portsTouched == 40)
        #expect(ended.first?.lastPort == ports[39])
        #expect(r.drain(at: t0 + 30).active.isEmpty)
        #expect(r.of(.scanDetected, .started).count == 1)
    }

    @Test func stealthFlagPatternsNameTheirKind() {
        let cases: [(TCPFlags, ScanKind)] = [(.fin, .fin), ([], .null), ([.fin, .psh, .urg], .xmas)]
        for (flags, kind) in cases {
            var r = Replay()
            for p in 0..<25 { r.feed(syn(from: scanner, to: UInt16(100 + p), flags: flags), at: t0 + Double(p) * 0.001) }
            r.drain(at: t0 + 1)
            #expect(r.of(.scanDetected, .started).map(\.scanKind) == [kind])
        }
    }

    @Test func udpScanFromDatagramsAndFromUnreachablesWeSend() {
        var r = Replay()
        for p in 0..<12 {
            r.feed(.udp(source: ep(scanner, 5000), destination: ep(here, UInt16(700 + p)), payloadBytes: 0), at: t0)
        }
        // The kernel answered some with ICMP port unreachable; those name more closed ports.
        for p in 12..<22 {
            let original = FlowEnds(source: ep(scanner, 5000), destination: ep(here, UInt16(700 + p)))
            r.feed(.portUnreachable(proto: .udp, original: original, reporter: ip(here)), .sent, at: t0 + 0.1)
        }
        r.drain(at: t0 + 1)
        let started = r.of(.scanDetected, .started)
        #expect(started.count == 1)
        #expect(started.first?.scanKind == .udp)
        #expect(started.first?.source == ip(scanner))
    }

    @Test func aSlowSourceUnderTheRateIsNoScan() {
        var r = Replay()
        // 19 new ports every window: 190 ports in all, never 20 within 10 s.
        for i in 0..<190 {
            r.feed(syn(from: scanner, to: UInt16(1000 + i)), at: t0 + Double(i) * (10.0 / 19.0) + 0.01)
            if i % 19 == 0 { r.drain(at: t0 + Double(i) * (10.0 / 19.0)) }
        }
        r.drain(at: t0 + 200)
        #expect(r.events.isEmpty)
    }

    @Test func scanningAnotherHostFromHereIsNotBeingScanned() {
        var r = Replay()
        let target = "10.9.0.7"
        for p in UInt16(1)...200 {
            let t = t0 + Double(p) * 0.001
            // Our SYN/FIN/UDP probes out, and what the target answers.
            r.feed(.tcp(source: ep(here, 45000), destination: ep(target, p), flags: .syn, sequence: 1, acknowledgment: 0), .sent, at: t)
            r.feed(.tcp(source: ep(here, 45000), destination: ep(target, p), flags: .fin, sequence: 1, acknowledgment: 0), .sent, at: t)
            r.feed(.udp(source: ep(here, 45001), destination: ep(target, p), payloadBytes: 0), .sent, at: t)
            r.feed(.tcp(source: ep(target, p), destination: ep(here, 45000), flags: [.rst, .ack], sequence: 0, acknowledgment: 2), at: t)
            r.feed(.tcp(source: ep(target, p), destination: ep(here, 45000), flags: [.syn, .ack], sequence: 9, acknowledgment: 2), at: t)
            let quoted = FlowEnds(source: ep(here, 45001), destination: ep(target, p))
            r.feed(.portUnreachable(proto: .udp, original: quoted, reporter: ip(target)), at: t)
        }
        r.drain(at: t0 + 30)
        #expect(r.events.isEmpty)
    }

    @Test func aClientsOwnManyPortsGettingAnswersIsNoScan() {
        var r = Replay()
        let resolver = "10.9.0.53"
        // 300 queries from 300 ephemeral ports, each answered; and 300 TCP connects, SYN-ACKed.
        for i in 0..<300 {
            let port = UInt16(33000 + i)
            let t = t0 + Double(i) * 0.01
            r.feed(.udp(source: ep(here, port), destination: ep(resolver, 53), payloadBytes: 30), .sent, at: t)
            r.feed(.udp(source: ep(resolver, 53), destination: ep(here, port), payloadBytes: 90), at: t + 0.002)
            r.feed(.tcp(source: ep(resolver, 443), destination: ep(here, port), flags: [.syn, .ack], sequence: 1, acknowledgment: 1), at: t)
        }
        r.drain(at: t0 + 60)
        #expect(r.events.isEmpty)
    }

    @Test func localAgentsOnLoopbackAreNoScanAndNoStormButTheirSynsCount() {
        var r = Replay()
        // A local scraper reaching 30 local exporters every second for two minutes.
        for round in 0..<120 {
            for p in 0..<30 {
                let t = t0 + Double(round) + Double(p) * 0.01
                r.feed(.tcp(source: ep("127.0.0.1", UInt16(40000 + p)), destination: ep("127.0.0.1", UInt16(9100 + p)),
                            flags: .syn, sequence: 1, acknowledgment: 0), .loopback, at: t)
                r.feed(.udp(source: ep("127.0.0.1", 50000), destination: ep("127.0.0.1", UInt16(8125 + p)), payloadBytes: 10), .loopback, at: t)
            }
            if round % 10 == 0 { r.drain(at: t0 + Double(round)) }
        }
        let last = r.drain(at: t0 + 121)
        #expect(r.events.isEmpty)
        // The SYNs since the drain at round 110 (rounds 111...119) are in the flood detector's tally.
        #expect(last.syns.count == 30)
        #expect(last.syns[9100]?.total == 9)
    }

    @Test func manyClientsOfOneOpenPortAreNoScanAndNoStorm() {
        var r = Replay()
        for c in 0..<50 {
            for k in 0..<40 {
                r.feed(syn(from: "10.9.1.\(c + 1)", UInt16(40000 + k), to: 443), at: t0 + Double(c * 40 + k) * 0.001)
            }
        }
        r.drain(at: t0 + 5)
        r.drain(at: t0 + 100)
        #expect(r.events.isEmpty)
    }

    @Test func sourcesBeyondTheLimitAreCountedNotTracked() {
        var d = PortScanDetector(threshold: 3, window: 10)
        d.sourceLimit = 2
        for a in 1...5 { d.observe(source: .v4(UInt32(a)), port: 1, kind: .syn, time: t0) }
        #expect(d.untracked == 3)
    }
}

@Suite struct ConnectionStormDetectionTests {
    @Test func aLoopOfShortConnectionsFromOneSourceIsAStorm() {
        var r = Replay()
        for k in 0..<150 { r.feed(syn(from: scanner, UInt16(40000 + k), to: 22), at: t0 + Double(k) * 0.2) }
        r.drain(at: t0 + 30)
        let started = r.of(.connectionStorm, .started)
        #expect(started.count == 1)
        #expect(started.first?.source == ip(scanner))
        #expect(started.first?.port == 22)
        #expect((started.first?.count ?? 0) >= 100)
        #expect(r.of(.scanDetected, .started).isEmpty)  // one port is no scan
        r.drain(at: t0 + 45)
        #expect(r.of(.connectionStorm, .started).count == 1)  // still going: no second start
        r.drain(at: t0 + 120)
        #expect(r.of(.connectionStorm, .ended).count == 1)
    }

    @Test func theThresholdIsConfigurable() {
        var settings = DetectorSettings()
        settings.stormConnections = 10
        settings.stormWindow = 5
        var r = Replay(settings)
        for k in 0..<9 { r.feed(syn(from: scanner, to: 22), at: t0 + Double(k) * 0.1) }
        r.drain(at: t0 + 1)
        #expect(r.events.isEmpty)
        r.feed(syn(from: scanner, to: 22), at: t0 + 1.1)
        r.drain(at: t0 + 1.2)
        #expect(r.of(.connectionStorm, .started).count == 1)
    }
}

@Suite struct FloodDetectionTests {
    private func tally(_ counts: [String: UInt64]) -> SynTally {
        var t = SynTally()
        for (a, n) in counts { for _ in 0..<n { t.add(ip(a)) } }
        return t
    }

    @Test func halfOpenConnectionsAloneMakeAFloodWithoutCapture() {
        var d = FloodDetector(settings: DetectorSettings())
        let quiet = ListenerLoad(port: 80, synRecv: 0, listenDrops: 0, opened: 500)
        var events = d.evaluate(now: t0, seconds: 1, listeners: [quiet, ListenerLoad(port: 8080, synRecv: 256, listenDrops: 0, opened: 0)],
                                syncookiesSent: 0, syns: nil)
        #expect(events.map(\.port) == [8080])
        #expect(events.first?.phase == .started)
        #expect(events.first?.reasons == ["syn_recv 256"])
        // Still flooded: no new event; then quiet for floodQuiet seconds: one end.
        events = d.evaluate(now: t0 + 1, seconds: 1, listeners: [ListenerLoad(port: 8080, synRecv: 300, listenDrops: 0, opened: 0)],
                            syncookiesSent: 0, syns: nil)
        #expect(events.isEmpty)
        events = d.evaluate(now: t0 + 5, seconds: 4, listeners: [ListenerLoad(port: 8080, synRecv: 0, listenDrops: 0, opened: 0)],
                            syncookiesSent: 0, syns: nil)
        #expect(events.isEmpty)
        events = d.evaluate(now: t0 + 12, seconds: 7, listeners: [ListenerLoad(port: 8080, synRecv: 0, listenDrops: 0, opened: 0)],
                            syncookiesSent: 0, syns: nil)
        #expect(events.map(\.phase) == [.ended])
        #expect(d.active.isEmpty)
    }

    @Test func synCookiesAreBlamedOnThePortTheSynsGoToAndNameTheSources() {
        var d = FloodDetector(settings: DetectorSettings())
        let syns = ["10.9.0.2": 4000, "10.9.0.3": 1000, "10.9.0.4": 5].mapValues { UInt64($0) }
        let events = d.evaluate(now: t0, seconds: 1,
                                listeners: [ListenerLoad(port: 80, synRecv: 1, listenDrops: 0, opened: 30),
                                            ListenerLoad(port: 9000, synRecv: 4, listenDrops: 0, opened: 0)],
                                syncookiesSent: 3000, syns: [80: tally(["10.9.0.9": 30]), 9000: tally(syns)])
        #expect(events.count == 1)
        let e = events.first
        #expect(e?.port == 9000)
        #expect(e?.rate == 5005)
        #expect(e?.sources.first?.address == ip("10.9.0.2"))
        #expect(e?.sources.first?.count == 4000)
        #expect(e?.reasons.contains("syncookies sent 3000") == true)
    }

    @Test func aBusyServerThatAcceptsEverythingIsNoFlood() {
        var d = FloodDetector(settings: DetectorSettings())
        var sources: [String: UInt64] = [:]
        for c in 0..<100 { sources["10.9.2.\(c)"] = 50 }
        for k in 0..<10 {
            let events = d.evaluate(now: t0 + Double(k), seconds: 1,
                                    listeners: [ListenerLoad(port: 443, synRecv: 12, listenDrops: 0, opened: 5000)],
                                    syncookiesSent: 0, syns: [443: tally(sources)])
            #expect(events.isEmpty)
        }
    }

    @Test func aStrayDropIsNoFloodButAFullAcceptQueueThatDropsIs() {
        var d = FloodDetector(settings: DetectorSettings())
        #expect(d.evaluate(now: t0, seconds: 1, listeners: [ListenerLoad(port: 80, synRecv: 0, listenDrops: 2, opened: 40)],
                           syncookiesSent: 0, syns: nil).isEmpty)
        let events = d.evaluate(now: t0 + 1, seconds: 1,
                                listeners: [ListenerLoad(port: 80, synRecv: 0, listenDrops: 2, opened: 0, acceptQueueFull: true)],
                                syncookiesSent: 0, syns: nil)
        #expect(events.first?.reasons == ["listen drops 2, accept queue full"])
    }

    @Test func listenDropsAreAcceptOverload() {
        var d = FloodDetector(settings: DetectorSettings())
        let events = d.evaluate(now: t0, seconds: 2, listeners: [ListenerLoad(port: 5432, synRecv: 0, listenDrops: 40, opened: 3)],
                                syncookiesSent: 0, syns: nil)
        #expect(events.first?.reasons == ["listen drops 40"])
        #expect(events.first?.rate == 20)
    }
}

import Testing
@testable import PortwatchMonitor
import PortwatchCore

// The security detectors in the daemon: their config section (switches and thresholds, with
// FILE:LINE:COL errors), and how a detection becomes an event, an alert and a metric.

@Test func detectorThresholdsAreReadAndTurnTheDetectorsOn() throws {
    let yaml = """
        capture: true
        detectors:
          port_scan: {ports: 12, window: 5s}
          syn_flood: {syn_recv: 50, syn_rate: 500, drop_rate: 3, quiet: 20s}
          connection_storm: {connections: 30, window: 2m}
        """
    let config = try ConfigLoader.parse(yaml, file: "d.yml")
    let s = try #require(config.detectors.security)
    #expect(s.portScan && s.synFlood && s.connectionStorm)
    #expect(s.scanPorts == 12 && s.scanWindow == 5)
    #expect(s.floodSynRecv == 50 && s.floodSynRate == 500 && s.floodDropRate == 3 && s.floodQuiet == 20)
    #expect(s.stormConnections == 30 && s.stormWindow == 120)
    #expect(SamplingSettings(config: config).detectors == s)
}

@Test func booleansStillWorkAndNoDetectorMeansNoSecurityStage() throws {
    let on = try ConfigLoader.parse("capture: true\ndetectors: {port_scan: true, syn_flood: false, connection_storm: {enabled: false, connections: 9}}\n", file: "d.yml")
    #expect(on.detectors.security?.portScan == true)
    #expect(on.detectors.security?.synFlood == false)
    #expect(on.detectors.security?.connectionStorm == false)
    #expect(on.detectors.thresholds.stormConnections == 9)
    #expect(try ConfigLoader.parse("detectors: {new_listener: true}\n", file: "d.yml").detectors.security == nil)
    // SYN floods are judged from counters: no capture needed.
    #expect(try ConfigLoader.parse("detectors: {syn_flood: true}\n", file: "d.yml").detectors.security?.synFlood == true)
}

@Test(arguments: [
    ("capture: true\ndetectors:\n  port_scan: {ports: 1}\n", 3, 22, "detectors.port_scan.ports: must be between 2 and 65535"),
    ("capture: true\ndetectors:\n  port_scan: {windw: 5s}\n", 3, 15, "detectors.port_scan: unknown key 'windw' (did you mean 'window'?)"),
    ("capture: true\ndetectors:\n  connection_storm: {window: 10ms}\n", 3, 30, "detectors.connection_storm.window: must be at least 1s"),
    ("detectors:\n  syn_flood: {syn_rate: -5}\n", 2, 25, "detectors.syn_flood.syn_rate: must be more than 0"),
    ("detectors:\n  connection_storm: {connections: 10}\n", 2, 21, "detectors.connection_storm: needs capture: true"),
])
func badDetectorSettingsNameLineAndColumn(_ yaml: String, _ line: Int, _ column: Int, _ phrase: String) {
    expectOneConfigProblem(yaml, file: "d.yml", line: line, column: column, phrase: phrase)
}

@Test func aDetectionIsATypedEventAndAnAlertThatFiresThenResolves() throws {
    let scan = SecurityEvent(kind: .scanDetected, phase: .started, time: 1_800_000_000, since: 1_799_999_999,
                             source: IPAddress("10.1.2.3"), scanKind: .xmas, proto: .tcp, portsTouched: 25,
                             firstPort: 100, lastPort: 140, count: 25)
    let event = MonitorEvent(scan)
    #expect(event.kind == .scanDetected)
    let json = try #require(event.json.objectPairs)
    #expect(json["ports_touched"] == .int(25))
    #expect(json["scan_kind"] == .string("xmas"))
    #expect(json["source"] == .string("10.1.2.3"))
    #expect(json["phase"] == .string("started"))
    let flood = SecurityEvent(kind: .floodDetected, phase: .ended, time: 1_800_000_010, since: 1_800_000_000, proto: .tcp,
                              port: 8080, rate: 2500, sources: [SourceCount(address: IPAddress("10.1.2.4")!, count: 900)],
                              reasons: ["syn_recv 300", "listen drops 20"])
    let floodJSON = try #require(MonitorEvent(flood).json.objectPairs)
    #expect(floodJSON["sources"] == .array([.object([("address", .string("10.1.2.4")), ("count", .int(900))])]))
    #expect(floodJSON["reasons"] == .array([.string("syn_recv 300"), .string("listen drops 20")]))
    #expect(floodJSON["rate"] == .double(2500))
    let firing = Alert(scan, thresholds: DetectorSettings(), instance: "h")
    #expect(firing.rule == "scan_detected" && firing.state == .firing && firing.value == 25)
    let resolved = Alert(flood, thresholds: DetectorSettings(), instance: "h")
    #expect(resolved.state == .resolved && resolved.port == 8080 && resolved.metric == "syn_rate")
}

@Test func scanCountersAreLabelledByKindAndStartAtZero() {
    let metrics = PortMetrics()
    let started = SecurityEvent(kind: .scanDetected, phase: .started, time: 1, since: 1, scanKind: .udp)
    metrics.recordDetections([started, SecurityEvent(kind: .scanDetected, phase: .ended, time: 2, since: 1, scanKind: .udp),
                              SecurityEvent(kind: .connectionStorm, phase: .started, time: 1, since: 1)])
    let text = String(decoding: metrics.render(), as: UTF8.self)
    #expect(text.contains("portwatch_scan_detected_total{kind=\"udp\"} 1"))
    #expect(text.contains("portwatch_scan_detected_total{kind=\"syn\"} 0"))
    #expect(text.contains("portwatch_connection_storm_total 1"))
    #expect(text.contains("portwatch_flood_detected_total 0"))
}

extension JSONValue {
    /// The members of an object by name (tests only).
    fileprivate var objectPairs: [String: JSONValue]? {
        guard case .object(let pairs) = self else { return nil }
        return Dictionary(pairs, uniquingKeysWith: { a, _ in a })
    }
}

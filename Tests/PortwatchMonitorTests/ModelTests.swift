import Testing
@testable import PortwatchMonitor
import PortwatchCore

@Test func everyRuleMetricNameRoundTrips() {
    for name in RuleMetric.names {
        #expect(RuleMetric(name: name)?.description == name)
    }
    #expect(RuleMetric(name: "connections.bogus") == nil)
}

@Test func rateMetricsDivideByTheWindow() {
    let s = PortSample(time: 0, proto: .tcp, port: 80, windowSeconds: 2, bytesReceived: 1000, listenDrops: 4)
    #expect(RuleMetric.receivedBps.value(in: s) == 4000)
    #expect(RuleMetric.listenDropsPerSecond.value(in: s) == 2)
    #expect(RuleMetric.acceptQueueRatio.value(in: s) == nil)
}

@Test func rfc3339FormatsUTCWithMilliseconds() {
    #expect(rfc3339(0) == "1970-01-01T00:00:00.000Z")
    #expect(rfc3339(1_795_555_234.5) == "2026-11-24T21:20:34.500Z")
    #expect(rfc3339(951_782_400) == "2000-02-29T00:00:00.000Z")
}

@Test func historyJSONCarriesRatesFromTheWindow() {
    let s = PortSample(time: 10, proto: .tcp, port: 443, windowSeconds: 5, bytesReceived: 5000, packetsReceived: 50)
    let text = s.historyJSON.serialized()
    #expect(text.contains("\"received_bps\":8000"))
    #expect(text.contains("\"received_pps\":10"))
}

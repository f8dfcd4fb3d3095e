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

import Testing
@testable import PortwatchCore

@Test func ipAddressRoundTrip() {
    #expect(IPAddress("127.0.0.1")?.description == "127.0.0.1")
    #expect(IPAddress("::1")?.description == "::1")
    #expect(IPAddress("::ffff:10.1.2.3")?.mappedV4 == IPAddress("10.1.2.3"))
    #expect(IPAddress("300.1.1.1") == nil)
}

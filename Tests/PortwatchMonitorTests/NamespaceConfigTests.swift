import Foundation
import Testing
@testable import PortwatchMonitor
import PortwatchCore

// `namespaces:` in the daemon's config: all, or a list of names; anything else names its place.

@Test func namespacesAllOrAListOfNames() throws {
    #expect(try ConfigLoader.parse("namespaces: all\n", file: "a.yml").namespaces == .all)
    #expect(try ConfigLoader.parse("namespaces: [web, db]\n", file: "b.yml").namespaces == .list(["web", "db"]))
    #expect(try ConfigLoader.parse("interval: 5s\n", file: "c.yml").namespaces == nil)
    let settings = SamplingSettings(config: try ConfigLoader.parse("namespaces: [web]\n", file: "d.yml"))
    #expect(settings.namespaces == .list(["web"]))
}

@Test(arguments: [
    ("namespaces: some\n", 1, 13, "expected all or a list"),
    ("interval: 5s\nnamespaces: [web, \"a/b\"]\n", 2, 19, "is not a namespace name"),
    ("namespaces: {web: 1}\n", 1, 13, "expected a list"),
])
func badNamespacesNameTheirPlace(_ yaml: String, _ line: Int, _ column: Int, _ phrase: String) {
    expectOneConfigProblem(yaml, line: line, column: column, phrase: phrase)
}

/// Rows of another namespace are kept apart from the daemon's own on the same port.
@Test func monitoredPortsOfDifferentNamespacesDiffer() {
    let own = MonitoredPort(proto: .tcp, port: 8080)
    let other = MonitoredPort(proto: .tcp, port: 8080, namespace: "web")
    #expect(own != other)
    #expect(other.description == "web tcp/8080")
    var sample = PortSample(time: 0, proto: .tcp, port: 8080)
    sample.namespace = "web"
    #expect(sample.key == other)
}

import Foundation
import Testing
@testable import PortwatchCore

/// Parses what a writer produced, as a consumer of `--json` would.
private func parse(_ w: JSONWriter) throws -> Any {
    try JSONSerialization.jsonObject(with: Data(w.bytes), options: [.fragmentsAllowed])
}

@Suite("JSON writer")
struct JSONWriterTests {
    @Test func nestingAndSeparators() throws {
        var w = JSONWriter()
        w.beginObject()
        w.field("a", 1)
        w.array("list") { w in w.int(1); w.int(-2); w.string("x"); w.null(); w.bool(true) }
        w.object("empty") { _ in }
        w.array("none") { _ in }
        w.field("name", nil as String?)
        w.endObject()
        #expect(w.text == #"{"a":1,"list":[1,-2,"x",null,true],"empty":{},"none":[],"name":null}"#)
    }

    @Test func prettyMatchesTwoSpaceIndent() throws {
        var w = JSONWriter(pretty: true)
        w.beginObject()
        w.field("a", 1)
        w.array("b") { w in w.int(2) }
        w.object("c") { _ in }
        w.endObject()
        #expect(w.text == "{\n  \"a\": 1,\n  \"b\": [\n    2\n  ],\n  \"c\": {}\n}")
    }

    @Test func stringsAreEscaped() throws {
        let tricky = "quote \" backslash \\ newline \n tab \t bell \u{7} nul \u{0} é 漢 🚀"
        var w = JSONWriter()
        w.string(tricky)
        #expect(try parse(w) as? String == tricky)
        #expect(!w.text.contains("\n"))
        var k = JSONWriter()
        k.beginObject(); k.key("we\"ird"); k.int(1); k.endObject()
        #expect((try parse(k) as? [String: Any])?["we\"ird"] as? Int == 1)
    }

    @Test func numbers() throws {
        var w = JSONWriter()
        w.beginArray()
        for v: Int64 in [0, 9, 10, 1234567890123, .max, .min] { w.int(v) }
        w.int(UInt64.max)
        w.double(1.5); w.double(2); w.double(.nan); w.double(0.123)
        w.endArray()
        #expect(w.text == "[0,9,10,1234567890123,9223372036854775807,-9223372036854775808,18446744073709551615,1.5,2,null,0.123]")
    }

    /// With a sink, bytes leave as containers close once the threshold is passed, and the
    /// pieces put together are the whole document.
    @Test func streamsThroughTheSink() throws {
        final class Collected: @unchecked Sendable { var chunks: [[UInt8]] = [] }
        let got = Collected()
        var w = JSONWriter(flushThreshold: 100, sink: { got.chunks.append(Array($0)) })
        w.beginObject()
        w.array("rows") { w in
            for i in 0..<100 { w.beginObject(); w.field("i", i); w.field("s", "row \(i)"); w.endObject() }
        }
        w.endObject()
        w.flush()
        #expect(got.chunks.count > 10, "rows should stream out, not wait for the end")
        #expect(got.chunks.allSatisfy { $0.count < 200 })
        let all = got.chunks.flatMap { $0 }
        let doc = try JSONSerialization.jsonObject(with: Data(all)) as? [String: Any]
        #expect((doc?["rows"] as? [Any])?.count == 100)
    }

    @Test func addresses() {
        var w = JSONWriter()
        w.beginArray()
        w.write(Endpoint(address: IPAddress("10.1.200.3")!, port: 80))
        w.write(Endpoint(address: IPAddress("0.0.0.0")!, port: 1))
        w.write(Endpoint(address: IPAddress("fd00::2")!, port: 65535))
        w.endArray()
        #expect(w.text == #"[{"address":"10.1.200.3","port":80},{"address":"0.0.0.0","port":1},{"address":"fd00::2","port":65535}]"#)
    }

    /// A free port's check, written from the pre-encoded members, says the same as the
    /// member-by-member encoding (pretty output takes that path).
    @Test func freePortCheckShortcutMatches() throws {
        let check = LocalCheck(proto: .udp, port: 5353, verdict: .free, summary: nil, listening: false,
                               connections: ConnectionCounts(), boundSockets: 0, clientConnections: 0, reasons: [])
        let outcome = CheckOutcome(expected: .free, matched: true)
        var compact = JSONWriter()
        compact.beginArray()
        compact.localCheck(check, outcome, service: "mdns", window: nil)
        compact.localCheck(check, outcome, service: nil, window: nil)
        compact.endArray()
        var pretty = JSONWriter(pretty: true)
        pretty.beginArray()
        pretty.localCheck(check, outcome, service: "mdns", window: nil)
        pretty.localCheck(check, outcome, service: nil, window: nil)
        pretty.endArray()
        let a = try #require(try parse(compact) as? NSArray)
        let b = try #require(try parse(pretty) as? NSArray)
        #expect(a == b)
        let first = try #require(a.firstObject as? [String: Any])
        #expect(first["verdict"] as? String == "free" && first["listening"] as? Bool == false)
        #expect((first["connections"] as? [String: Any])?["total"] as? Int == 0)
        #expect(first["client_connections"] as? Int == 0)
        #expect(first["reasons"] as? [Any] != nil && first["caveats"] as? [String] == [])
        #expect(first.keys.count == 18, "\(first.keys.sorted())")
    }

    /// A PORT object keeps the field names of PRODUCT.md's contract.
    @Test func portObjectShape() throws {
        var summary = PortSummary(proto: .tcp, port: 8080, role: .local)
        summary.listeners = [ListenerInfo(local: Endpoint(address: .anyV4, port: 8080), acceptQueue: 1, backlog: 128,
                                          inode: 42, uid: 0, drops: 0)]
        summary.connections.add(.established)
        var w = JSONWriter()
        let row = PortRow(summary: summary, activity: PortActivity(), reasons: [])
        w.port(row, service: "http-alt", window: PortWindow(activity: PortActivity(), seconds: 1, captured: false))
        let obj = try #require(try parse(w) as? [String: Any])
        for key in ["protocol", "port", "service", "listening", "addresses", "connections", "accept_queue", "bytes",
                    "packets", "processes", "errors", "window", "rates", "listeners", "state", "reasons"] {
            #expect(obj[key] != nil, "missing \(key)")
        }
        #expect(obj["port"] as? Int == 8080)
        #expect((obj["connections"] as? [String: Any])?["established"] as? Int == 1)
        #expect((obj["accept_queue"] as? [String: Any])?["max"] as? Int == 128)
        #expect(obj["addresses"] as? [String] == ["0.0.0.0"])
        #expect(obj["state"] as? String == "listen" && obj["overloaded"] as? Bool == false)
    }

    /// A row overloaded by its window (listen drops rising) says so in `overloaded`, `state`
    /// and `reasons`, although the snapshot alone saw no full queue.
    @Test func portObjectCarriesTheRowsReasons() throws {
        var summary = PortSummary(proto: .tcp, port: 8080, role: .local)
        summary.listeners = [ListenerInfo(local: Endpoint(address: .anyV4, port: 8080), acceptQueue: 0, backlog: 128,
                                          inode: 42, uid: 0, drops: 0)]
        var activity = PortActivity()
        activity.listenDrops = 3
        let row = PortRow(summary: summary, activity: activity,
                          reasons: overloadReasons(summary, activity: activity, syncookies: 0))
        var w = JSONWriter()
        w.port(row, service: nil, window: PortWindow(activity: activity, seconds: 1, captured: false))
        let obj = try #require(try parse(w) as? [String: Any])
        #expect(obj["overloaded"] as? Bool == true && obj["state"] as? String == "overloaded")
        let reasons = try #require(obj["reasons"] as? [[String: Any]])
        #expect(reasons.count == 1 && reasons.first?["count"] as? Int == 3)
        #expect(((obj["window"] as? [String: Any])?["errors"] as? [String: Any])?["listen_drops"] as? Int == 3)
    }
}

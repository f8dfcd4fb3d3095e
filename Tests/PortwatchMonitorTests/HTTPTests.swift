// The HTTP API over a real sample of a real loopback listener: shapes, errors, the token,
// /healthz and the event stream. Router tests (`.router`) run without a socket; the stream is
// also read over a real one (`.live`).

import Foundation
import Hummingbird
import HummingbirdTesting
import PortwatchCore
@testable import PortwatchMonitor
import Testing

private func makeApp(_ source: FakeMonitorSource, token: String? = nil, metrics: PortMetrics = PortMetrics())
    -> some ApplicationProtocol {
    buildApplication(source: source, options: HTTPOptions(listen: ListenAddress(host: "127.0.0.1", port: 0), token: token),
                     metrics: metrics)
}

private func event(_ kind: EventKind, _ port: UInt16, ago: Double, _ now: Double) -> MonitorEvent {
    MonitorEvent(time: now - ago, kind: kind, proto: .tcp, port: port, message: "\(kind.rawValue) on \(port)",
                 details: ["address": "127.0.0.1"])
}

private func alert(_ port: UInt16, since: Double) -> Alert {
    Alert(rule: "busy", state: .firing, severity: "warning", proto: .tcp, port: port, metric: "connections",
          value: 1, threshold: 0, since: since, message: "1 connection", instance: "test")
}

@Suite("HTTP API")
struct HTTPTests {
    @Test func portsDocumentHasTheListenerRowWithWindowAndRates() async throws {
        let busy = try BusyListener()
        defer { busy.close() }
        let app = makeApp(FakeMonitorSource(sample: busy.latest))
        try await app.test(.router) { client in
            try await client.execute(uri: "/api/v1/ports", method: .get) { response in
                #expect(response.status == .ok)
                #expect(response.headers[.contentType]?.hasPrefix("application/json") == true)
                let doc = try decodeJSONObject(String(buffer: response.body))
                let rows = try #require(doc["ports"] as? [[String: Any]])
                let row = try #require(rows.first { $0["port"] as? Int == Int(busy.listener.port) && $0["protocol"] as? String == "tcp" })
                #expect(row["listening"] as? Bool == true)
                #expect(row["addresses"] as? [String] == ["127.0.0.1"])
                #expect(row.keys.contains("service"))
                let connections = try #require(row["connections"] as? [String: Any])
                #expect(connections["established"] as? Int == 1)
                let window = try #require(row["window"] as? [String: Any])
                let bytes = try #require(window["bytes"] as? [String: Any])
                #expect(bytes["received"] as? Int == 3000)
                #expect(bytes["sent"] as? Int == 1000)
                let rates = try #require(row["rates"] as? [String: Any])
                #expect((rates["received_bps"] as? Double ?? 0) > 0)
                #expect(abs((doc["taken_at"] as? Double ?? 0) - busy.latest.snapshot.takenAt) < 0.001)
            }
        }
    }

    @Test func onePortIsTheBarePortObjectAndAMissingOneIs404() async throws {
        let busy = try BusyListener()
        defer { busy.close() }
        let app = makeApp(FakeMonitorSource(sample: busy.latest))
        let present = Set(busy.latest.snapshot.ports.map(\.port))
        let absent = try #require((1...UInt16.max).first { !present.contains($0) })
        try await app.test(.router) { client in
            try await client.execute(uri: "/api/v1/ports/tcp/\(busy.listener.port)", method: .get) { response in
                #expect(response.status == .ok)
                let row = try decodeJSONObject(String(buffer: response.body))
                #expect(row["port"] as? Int == Int(busy.listener.port))
                #expect(row["protocol"] as? String == "tcp")
                #expect(row["window"] is [String: Any])
                #expect(row["rates"] is [String: Any])
                #expect(row["ports"] == nil)
            }
            try await client.execute(uri: "/api/v1/ports/TCP/\(busy.listener.port)", method: .get) { response in
                #expect(response.status == .ok)
            }
            try await client.execute(uri: "/api/v1/ports/tcp/\(absent)", method: .get) { response in
                #expect(response.status == .notFound)
                let error = try decodeJSONObject(String(buffer: response.body))
                #expect((error["error"] as? String)?.contains("\(absent)") == true)
            }
        }
    }

    @Test(arguments: [
        "/api/v1/ports/sctp/80", "/api/v1/ports/tcp/0", "/api/v1/ports/tcp/65536", "/api/v1/ports/tcp/http",
        "/api/v1/ports/tcp/-1", "/api/v1/ports/udp/80/history?since=yesterday", "/api/v1/ports/tcp/80/history?since=-1h",
        "/api/v1/ports/tcp/80/history?since=0s", "/api/v1/ports/tcp/80/history?step=0", "/api/v1/ports/tcp/80/history?step=1x",
        "/api/v1/ports/tcp/99999/history", "/api/v1/ports/x/80/history", "/api/v1/events?since=bogus",
        "/api/v1/events?port=70000", "/api/v1/events?port=abc", "/api/v1/events?limit=0", "/api/v1/events?limit=many",
    ])
    func badParametersAre400WithAJSONError(uri: String) async throws {
        let source = FakeMonitorSource(sample: try LoopbackSampler.once())
        try await makeApp(source).test(.router) { client in
            try await client.execute(uri: uri, method: .get) { response in
                #expect(response.status == .badRequest)
                let error = try decodeJSONObject(String(buffer: response.body))
                let message = try #require(error["error"] as? String)
                #expect(!message.isEmpty)
                #expect(error.count == 1)
            }
        }
        // A bad request never reaches the store.
        #expect(source.historyCalls.withLock { $0.isEmpty })
        #expect(source.eventCalls.withLock { $0.isEmpty })
    }

    @Test func unknownEndpointsAndMethodsAnswerJSONErrors() async throws {
        let app = makeApp(FakeMonitorSource(sample: try LoopbackSampler.once()))
        try await app.test(.router) { client in
            try await client.execute(uri: "/api/v1/nothing", method: .get) { response in
                #expect(response.status == .notFound)
                try #expect(decodeJSONObject(String(buffer: response.body))["error"] is String)
            }
            try await client.execute(uri: "/api/v1/ports", method: .post) { response in
                #expect(response.status.code >= 400)
                try #expect(decodeJSONObject(String(buffer: response.body))["error"] is String)
            }
        }
    }

    @Test func aFailingStoreAnswers500WithAJSONError() async throws {
        let source = FakeMonitorSource(sample: try LoopbackSampler.once(),
                                       storeError: .system("database disk image is malformed"))
        try await makeApp(source).test(.router) { client in
            for uri in ["/api/v1/ports/tcp/80/history", "/api/v1/events"] {
                try await client.execute(uri: uri, method: .get) { response in
                    #expect(response.status == .internalServerError)
                    let error = try decodeJSONObject(String(buffer: response.body))
                    #expect((error["error"] as? String)?.contains("malformed") == true)
                }
            }
        }
    }

    @Test func historyPassesSinceAndStepAndDefaultsToOneHourAtTheFinestStep() async throws {
        let busy = try BusyListener()
        defer { busy.close() }
        let source = FakeMonitorSource(sample: busy.latest)
        let port = busy.listener.port
        try await makeApp(source).test(.router) { client in
            try await client.execute(uri: "/api/v1/ports/tcp/\(port)/history?since=2h&step=1m", method: .get) { response in
                #expect(response.status == .ok)
                let doc = try decodeJSONObject(String(buffer: response.body))
                #expect(doc["protocol"] as? String == "tcp")
                #expect(doc["port"] as? Int == Int(port))
                #expect(doc["step_seconds"] as? Int == 60)
                let samples = try #require(doc["samples"] as? [[String: Any]])
                #expect(samples.count == 12)
                for key in ["time", "connections", "bytes", "packets", "rates", "errors"] {
                    #expect(samples[0][key] != nil, "sample lacks \(key)")
                }
            }
            try await client.execute(uri: "/api/v1/ports/tcp/\(port)/history", method: .get) { response in
                #expect(response.status == .ok)
            }
        }
        let calls = source.historyCalls.withLock { $0 }
        try #require(calls.count == 2)
        #expect(calls[0].0 == busy.key)
        #expect(calls[0].2 == 60)
        #expect(calls[1].2 == nil)
        // Each request counts back from its own "now": 2 h, then the default 1 h.
        let span = calls[1].1 - calls[0].1
        #expect(span > 3600 - 60 && span < 3600 + 60)
    }

    @Test func eventsAndAlertsHaveTheirDocumentedShapes() async throws {
        let busy = try BusyListener()
        defer { busy.close() }
        let now = busy.latest.snapshot.takenAt
        let port = busy.listener.port
        let source = FakeMonitorSource(
            sample: busy.latest,
            events: [event(.listenerStarted, port, ago: 600, now), event(.listenerStarted, 1, ago: 300, now),
                     event(.alertFiring, port, ago: 10, now)],
            alerts: [alert(port, since: now - 10)])
        try await makeApp(source).test(.router) { client in
            try await client.execute(uri: "/api/v1/events?since=1h&port=\(port)&limit=50", method: .get) { response in
                #expect(response.status == .ok)
                let events = try #require(try decodeJSONObject(String(buffer: response.body))["events"] as? [[String: Any]])
                #expect(events.map { $0["kind"] as? String } == ["listener_started", "alert_firing"])
                for e in events {
                    #expect(e["port"] as? Int == Int(port))
                    #expect(e["protocol"] as? String == "tcp")
                    #expect(e["time"] is String && e["message"] is String)
                    #expect(e["address"] as? String == "127.0.0.1")
                }
            }
            try await client.execute(uri: "/api/v1/alerts", method: .get) { response in
                #expect(response.status == .ok)
                let alerts = try #require(try decodeJSONObject(String(buffer: response.body))["alerts"] as? [[String: Any]])
                #expect(alerts.count == 1)
                for key in ["rule", "state", "protocol", "port", "since", "value"] {
                    #expect(alerts.first?[key] != nil, "alert lacks \(key)")
                }
                #expect(alerts.first?["state"] as? String == "firing")
            }
        }
        let calls = source.eventCalls.withLock { $0 }
        #expect(calls.count == 1)
        #expect(calls.first?.1 == port)
        #expect(calls.first?.2 == 50)
    }

    @Test func aTokenGuardsEveryEndpointButHealthz() async throws {
        let busy = try BusyListener()
        defer { busy.close() }
        let token = "s3cret-\(busy.listener.port)"
        let app = makeApp(FakeMonitorSource(sample: busy.latest, interval: .seconds(3600)), token: token)
        let guarded = ["/api/v1/ports", "/api/v1/ports/tcp/\(busy.listener.port)", "/api/v1/ports/tcp/\(busy.listener.port)/history",
                       "/api/v1/events", "/api/v1/alerts", "/api/v1/stream", "/metrics", "/api/v1/nothing"]
        try await app.test(.router) { client in
            for uri in guarded {
                for headers: HTTPFields in [[:], [.authorization: "Bearer wrong"], [.authorization: "Bearer \(token)x"],
                                            [.authorization: "Basic \(token)"], [.authorization: token]] {
                    try await client.execute(uri: uri, method: .get, headers: headers) { response in
                        #expect(response.status == .unauthorized, "\(uri) answered without the token")
                        #expect(response.headers[.wwwAuthenticate]?.hasPrefix("Bearer") == true)
                        let body = String(buffer: response.body)
                        try #expect(decodeJSONObject(body)["error"] is String)
                        #expect(!body.contains(token))
                    }
                }
            }
            for uri in guarded.dropLast() {
                try await client.execute(uri: uri, method: .get, headers: [.authorization: "Bearer \(token)"]) { response in
                    #expect(response.status == .ok, "\(uri) refused the right token")
                }
            }
            try await client.execute(uri: "/api/v1/ports", method: .get, headers: [.authorization: "bearer \(token)"]) { response in
                #expect(response.status == .ok)
            }
            // EventSource cannot send headers: the stream, and only the stream, takes ?token=.
            try await client.execute(uri: "/api/v1/stream?token=\(token)", method: .get) { response in
                #expect(response.status == .ok)
            }
            try await client.execute(uri: "/api/v1/ports?token=\(token)", method: .get) { response in
                #expect(response.status == .unauthorized)
            }
            try await client.execute(uri: "/healthz", method: .get) { response in
                #expect(response.status == .ok)
            }
            // The dashboard's static files carry no data; its API calls need the token.
            try await client.execute(uri: "/", method: .get) { response in
                #expect(response.status == .ok)
            }
        }
    }

    @Test func healthzIsCurrentForThreeIntervals() async throws {
        // A long interval keeps "fresh" fresh however slowly a loaded machine runs the test.
        var latest = try LoopbackSampler.once()
        latest.snapshot.takenAt = wallClock() - 1
        try await makeApp(FakeMonitorSource(sample: latest, interval: .seconds(60))).test(.router) { client in
            try await client.execute(uri: "/healthz", method: .get) { response in
                #expect(response.status == .ok)
                let doc = try decodeJSONObject(String(buffer: response.body))
                #expect(doc["status"] as? String == "ok")
                #expect(doc["interval_seconds"] as? Int == 60)
            }
        }
        latest.snapshot.takenAt = wallClock() - 181
        try await makeApp(FakeMonitorSource(sample: latest, interval: .seconds(60))).test(.router) { client in
            try await client.execute(uri: "/healthz", method: .get) { response in
                #expect(response.status == .serviceUnavailable)
                try #expect(decodeJSONObject(String(buffer: response.body))["status"] as? String == "stale")
            }
        }
        try await makeApp(FakeMonitorSource(sample: nil)).test(.router) { client in
            try await client.execute(uri: "/healthz", method: .get) { response in
                #expect(response.status == .serviceUnavailable)
                try #expect(decodeJSONObject(String(buffer: response.body))["status"] as? String == "starting")
            }
            try await client.execute(uri: "/api/v1/ports", method: .get) { response in
                #expect(response.status == .serviceUnavailable)
                try #expect(decodeJSONObject(String(buffer: response.body))["error"] is String)
            }
        }
    }

    @Test(arguments: [false, true])
    func streamSendsASampleAndAnEvent(live: Bool) async throws {
        let busy = try BusyListener()
        defer { busy.close() }
        let now = busy.latest.snapshot.takenAt
        let source = FakeMonitorSource(sample: busy.latest, events: [event(.listenerStarted, busy.listener.port, ago: 1, now)])
        let check: @Sendable (TestResponse) throws -> Void = { response in
            #expect(response.status == .ok)
            #expect(response.headers[.contentType]?.hasPrefix("text/event-stream") == true)
            let text = String(buffer: response.body)
            let frames = text.components(separatedBy: "\n\n").filter { !$0.isEmpty }
            let sample = try #require(frames.first { $0.hasPrefix("event: sample\n") })
            let sampleDoc = try decodeJSONObject(String(try #require(sample.split(separator: "\n").last).dropFirst("data: ".count)))
            let ports = try #require(sampleDoc["ports"] as? [[String: Any]])
            let row = try #require(ports.first { $0["port"] as? Int == Int(busy.listener.port) })
            #expect((row["connections"] as? [String: Any])?["established"] as? Int == 1)
            #expect(row["rates"] is [String: Any])
            let ev = try #require(frames.first { $0.hasPrefix("event: event\n") })
            let evDoc = try decodeJSONObject(String(try #require(ev.split(separator: "\n").last).dropFirst("data: ".count)))
            #expect(evDoc["kind"] as? String == "listener_started")
        }
        let app = makeApp(source)
        if live {
            try await app.test(.live) { client in
                try await client.execute(uri: "/api/v1/stream", method: .get) { try check($0) }
            }
        } else {
            try await app.test(.router) { client in
                try await client.execute(uri: "/api/v1/stream", method: .get) { try check($0) }
            }
        }
    }

    @Test func dashboardAndItsAssetsAreServed() async throws {
        let app = makeApp(FakeMonitorSource(sample: nil))
        try await app.test(.router) { client in
            try await client.execute(uri: "/", method: .get) { response in
                #expect(response.status == .ok)
                #expect(response.headers[.contentType]?.hasPrefix("text/html") == true)
                let page = String(buffer: response.body)
                #expect(page.contains("<table id=\"ports\""))
                #expect(page.contains("/assets/dygraph.min.js"))
                #expect(!page.contains("http://") && !page.contains("https://"), "the page must not load anything remote")
            }
            try await client.execute(uri: "/assets/dygraph.min.js", method: .get) { response in
                #expect(response.status == .ok)
                #expect(String(buffer: response.body).contains("Dygraph"))
            }
            try await client.execute(uri: "/assets/dygraph.LICENSE.txt", method: .get) { response in
                #expect(String(buffer: response.body).contains("Permission is hereby granted"))
            }
            try await client.execute(uri: "/assets/dashboard.js", method: .get) { response in
                #expect(String(buffer: response.body).contains("EventSource"))
            }
        }
    }

    @Test func constantTimeCompareMatchesOnlyTheSameBytes() {
        let secret = Array("token-123".utf8)
        #expect(constantTimeEquals(secret, secret))
        #expect(!constantTimeEquals(Array("token-12".utf8), secret))
        #expect(!constantTimeEquals(Array("token-1234".utf8), secret))
        #expect(!constantTimeEquals(Array("token-124".utf8), secret))
        #expect(!constantTimeEquals([], secret))
        #expect(!constantTimeEquals([], []))
    }
}

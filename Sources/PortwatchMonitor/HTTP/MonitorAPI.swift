import Foundation
import Hummingbird
import PortwatchCore

#if canImport(Glibc)
import Glibc
#endif

/// The `/api/v1` endpoints, `/healthz` and `/metrics`: each reads the daemon only through
/// `MonitorDataSource`, and answers bad input with a 400 JSON error.
struct MonitorAPI<Context: RequestContext>: Sendable {
    let source: any MonitorDataSource
    let metrics: PortMetrics
    let options: HTTPOptions
    let services: ServiceDatabase

    /// Events answered at most per request.
    static var eventLimit: Int { 10_000 }

    func addRoutes(to router: Router<Context>) {
        router.get("/healthz") { _, _ in await health() }
        router.get("/metrics") { _, _ in await scrape() }
        let api = router.group("/api/v1")
        api.get("/ports") { request, _ in try await ports(request) }
        api.get("/ports/{protocol}/{port}") { request, context in try await port(request, context) }
        api.get("/ports/{protocol}/{port}/history") { request, context in try await history(request, context) }
        api.get("/events") { request, _ in try await events(request) }
        api.get("/alerts") { request, _ in try await alerts(request) }
        api.get("/probes") { _, _ in jsonResponse(APIDocuments.probes(await source.probes())) }
        api.get("/probes/{target}/history") { request, context in try await probeHistory(request, context) }
        api.get("/stream") { _, _ in
            await EventStream.response(source: source, services: services, keepAlive: options.streamKeepAlive)
        }
    }

    private func latestOrUnavailable() async throws(APIError) -> LatestSample {
        guard let latest = await source.latest() else {
            throw APIError(.serviceUnavailable, "no sample yet: the first one is being taken")
        }
        return latest
    }

    /// `?netns=` keeps one network namespace's rows (`host`: the daemon's own); without it,
    /// every sampled namespace's.
    private func ports(_ request: Request) async throws -> Response {
        let netns = try APIParameters.netnsFilter(request)
        return jsonResponse(bytes: try APIDocuments.ports(try await latestOrUnavailable(), services: services, netns: netns))
    }

    private func key(_ context: Context) throws(APIError) -> MonitoredPort {
        let proto = try APIParameters.proto(context.parameters.get("protocol"))
        let port = try APIParameters.port(context.parameters.get("port") ?? "")
        return MonitoredPort(proto: proto, port: port)
    }

    /// `?netns=` picks the port of another network namespace (default: the daemon's own).
    private func port(_ request: Request, _ context: Context) async throws -> Response {
        var key = try key(context)
        let netns = try APIParameters.netnsFilter(request)
        key.namespace = netns?.label
        let latest = try await latestOrUnavailable()
        guard let bytes = try APIDocuments.port(key, in: latest, services: services, netns: netns) else {
            throw APIError.notFound("no row for \(key): nothing listens there and it has no connections")
        }
        return jsonResponse(bytes: bytes)
    }

    /// `?netns=` picks another network namespace's history (default: the daemon's own).
    private func history(_ request: Request, _ context: Context) async throws -> Response {
        var key = try key(context)
        key.namespace = try APIParameters.netns(request)
        let since = try APIParameters.duration(request, "since", fallback: .seconds(3600))!
        let step = try APIParameters.duration(request, "step", fallback: nil)
        let series = try await source.history(key, since: wallClock() - apiSeconds(since), step: step.map(apiSeconds))
        return jsonResponse(series.json)
    }

    /// `{target}` is the probe's target as configured, URL-encoded (`127.0.0.1%3A5432`, `%5B%3A%3A1%5D%3A443`).
    private func probeHistory(_ request: Request, _ context: Context) async throws -> Response {
        let raw = context.parameters.get("target") ?? ""
        let target = raw.removingPercentEncoding ?? raw
        let since = try APIParameters.duration(request, "since", fallback: .seconds(3600))!
        guard let history = try await source.probeHistory(target, since: wallClock() - apiSeconds(since)) else {
            throw APIError.notFound("no probe of '\(APIParameters.printable(target))' is configured")
        }
        return jsonResponse(ProbeJSON.history(history))
    }

    /// `?netns=` keeps the alerts about one network namespace (`host`: those about none other).
    private func alerts(_ request: Request) async throws -> Response {
        let netns = try APIParameters.netnsFilter(request)
        let alerts = await source.alerts().filter { netns?.matches($0.namespace) != false }
        return jsonResponse(APIDocuments.alerts(alerts))
    }

    /// `?netns=` keeps the events of one network namespace (`host`: those about none other).
    private func events(_ request: Request) async throws -> Response {
        let since = try APIParameters.duration(request, "since", fallback: .seconds(3600))!
        let port = try request.uri.queryParameters["port"].map { text throws(APIError) in try APIParameters.port(text) }
        let netns = try APIParameters.netnsFilter(request)
        let limit = try APIParameters.count(request, "limit", fallback: 1000, max: Self.eventLimit)
        let found = try await source.events(since: wallClock() - apiSeconds(since), port: port, netns: netns, limit: limit)
        return jsonResponse(APIDocuments.events(found))
    }

    private func health() async -> Response {
        let interval = apiSeconds(source.interval)
        guard let latest = await source.latest() else {
            return jsonResponse(APIDocuments.health(status: "starting", lastSample: nil, age: nil, interval: interval),
                                status: .serviceUnavailable)
        }
        let age = wallClock() - latest.snapshot.takenAt
        let current = age < 3 * interval
        return jsonResponse(APIDocuments.health(status: current ? "ok" : "stale", lastSample: latest.snapshot.takenAt,
                                                age: age, interval: interval),
                            status: current ? .ok : .serviceUnavailable)
    }

    private func scrape() async -> Response {
        if let latest = await source.latest() { metrics.refresh(from: latest) }
        var headers = HTTPFields()
        headers[.contentType] = "text/plain; version=0.0.4; charset=utf-8"
        headers[.cacheControl] = "no-store"
        return Response(status: .ok, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: metrics.render())))
    }
}

/// Wall-clock time in seconds since the epoch (history and event queries count back from it).
func wallClock() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

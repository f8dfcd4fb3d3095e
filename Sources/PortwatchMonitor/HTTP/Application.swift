import Hummingbird
import Logging
import PortwatchCore

/// The router of the daemon's HTTP server: the API, `/metrics`, `/healthz` and the dashboard,
/// behind the bearer-token check when `options.token` is set.
public func buildRouter(source: any MonitorDataSource, options: HTTPOptions,
                        metrics: PortMetrics) -> Router<BasicRequestContext> {
    let router = Router(context: BasicRequestContext.self)
    // Middleware first: it only wraps routes added after it (and the not-found answer).
    router.add(middleware: JSONErrorMiddleware())
    if let token = options.token {
        router.add(middleware: BearerTokenMiddleware(token: token))
    }
    MonitorAPI(source: source, metrics: metrics, options: options, services: .system).addRoutes(to: router)
    DashboardAssets.addRoutes(to: router)
    return router
}

/// The daemon's HTTP server as a Hummingbird application (a `Service` for the daemon's group).
public func buildApplication(source: any MonitorDataSource, options: HTTPOptions,
                             metrics: PortMetrics) -> some ApplicationProtocol {
    let router = buildRouter(source: source, options: options, metrics: metrics)
    let logger = Logger(label: "portwatch.http")
    return Application(
        router: router,
        configuration: .init(address: .hostname(options.listen.host, port: Int(options.listen.port)),
                             serverName: "portwatch"),
        logger: logger
    )
}

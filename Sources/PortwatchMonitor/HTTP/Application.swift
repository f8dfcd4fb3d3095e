import Hummingbird
import NIOCore
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
/// `onServerRunning` is called once it listens, with the address it bound (the real port when
/// `options.listen` asked for port 0).
public func buildApplication(source: any MonitorDataSource, options: HTTPOptions, metrics: PortMetrics,
                             onServerRunning: @escaping @Sendable (ListenAddress) async -> Void = { _ in })
    -> some ApplicationProtocol {
    let router = buildRouter(source: source, options: options, metrics: metrics)
    let logger = Logger(label: "portwatch.http")
    let listen = options.listen
    return Application(
        router: router,
        configuration: .init(address: .hostname(listen.host, port: Int(listen.port)),
                             serverName: "portwatch"),
        onServerRunning: { channel in
            let port = channel.localAddress?.port.flatMap { UInt16(exactly: $0) } ?? listen.port
            await onServerRunning(ListenAddress(host: listen.host, port: port))
        },
        logger: logger
    )
}

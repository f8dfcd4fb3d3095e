/// How the HTTP server listens and whom it answers.
public struct HTTPOptions: Sendable {
    /// Address and port to bind.
    public var listen: ListenAddress
    /// Bearer token every endpoint but `/healthz` requires; nil: no authentication (loopback only).
    public var token: String?
    /// Time between keep-alive comments on `/api/v1/stream`, so proxies and browsers keep it open.
    public var streamKeepAlive: Duration

    public init(listen: ListenAddress, token: String? = nil, streamKeepAlive: Duration = .seconds(15)) {
        self.listen = listen
        self.token = token
        self.streamKeepAlive = streamKeepAlive
    }
}

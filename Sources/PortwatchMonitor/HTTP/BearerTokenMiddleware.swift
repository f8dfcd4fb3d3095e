import Hummingbird

/// Requires `Authorization: Bearer TOKEN` on every request except `/healthz` and the dashboard's
/// static files (the page itself carries no data; it sends the token with each API call).
/// `/api/v1/stream` also takes `?token=`, since a browser's EventSource cannot send headers.
/// The token is never logged: a refusal names neither the expected nor the offered value.
struct BearerTokenMiddleware<Context: RequestContext>: RouterMiddleware {
    let token: [UInt8]

    init(token: String) { self.token = Array(token.utf8) }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let path = request.uri.path
        if path == "/healthz" || DashboardAssets.isPublic(path) || authorized(request) {
            return try await next(request, context)
        }
        throw APIError(.unauthorized, "missing or wrong bearer token (send Authorization: Bearer TOKEN)",
                       headers: [.wwwAuthenticate: "Bearer realm=\"portwatch\""])
    }

    private func authorized(_ request: Request) -> Bool {
        for value in request.headers[values: .authorization] {
            let bytes = Array(value.utf8)
            // The scheme is case-insensitive (RFC 9110); one space separates it from the token.
            guard bytes.count > 7, String(decoding: bytes[0..<7], as: UTF8.self).lowercased() == "bearer " else { continue }
            if constantTimeEquals(Array(bytes[7...]), token) { return true }
        }
        if request.uri.path == "/api/v1/stream", let query = request.uri.queryParameters["token"] {
            return constantTimeEquals(Array(query.utf8), token)
        }
        return false
    }
}

/// Compares without an early exit, so the time taken tells nothing about how much of the secret
/// matched: it depends only on the length of the offered value.
func constantTimeEquals(_ offered: [UInt8], _ secret: [UInt8]) -> Bool {
    guard !secret.isEmpty else { return false }
    var difference = UInt64(offered.count ^ secret.count)
    for i in offered.indices {
        difference |= UInt64(offered[i] ^ secret[i % secret.count])
    }
    return difference == 0
}

import Hummingbird

/// Turns the router's own errors (no such route: 404, wrong method: 405) into the API's
/// `{"error": "..."}` shape, so every error a client sees reads the same.
struct JSONErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as HTTPError {
            let message = error.body ?? (error.status == .notFound ? "no such endpoint: \(APIParameters.printable(request.uri.path))"
                                                                    : error.status.reasonPhrase)
            throw APIError(error.status, message, headers: error.headers)
        }
    }
}

import Hummingbird
import Logging
import PortwatchCore

/// Turns every error a handler or the router throws into the API's `{"error": "..."}` shape:
/// the router's own (no such route: 404, wrong method: 405), bad input from the data source
/// (400), and failures of the history store (500, logged), so every error a client sees reads
/// the same.
struct JSONErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    let logger = Logger(label: "portwatch.http")

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as APIError {
            throw error
        } catch let error as HTTPError {
            let message = error.body ?? (error.status == .notFound ? "no such endpoint: \(APIParameters.printable(request.uri.path))"
                                                                    : error.status.reasonPhrase)
            throw APIError(error.status, message, headers: error.headers)
        } catch let error as PortwatchError where error.kind == .usage {
            throw APIError(.badRequest, error.message)
        } catch {
            // The path only: a query string could hold a token.
            logger.error("\(request.method) \(request.uri.path) failed: \(error)")
            throw APIError(.internalServerError, "\(error)")
        }
    }
}

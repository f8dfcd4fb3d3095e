import Hummingbird

/// The dashboard at `/`: one page, its script and style, and dygraphs with its licence, all
/// built into the binary. These files carry no data (every number comes from the API, which
/// needs the token when one is set), so they are served without authentication.
enum DashboardAssets {
    /// Path → (content type, bytes).
    static let files: [String: (type: String, body: String)] = [
        "/": ("text/html; charset=utf-8", page),
        "/assets/dashboard.js": ("text/javascript; charset=utf-8", script),
        "/assets/dashboard.css": ("text/css; charset=utf-8", style),
        "/assets/dygraph.min.js": ("text/javascript; charset=utf-8", dygraphScript),
        "/assets/dygraph.LICENSE.txt": ("text/plain; charset=utf-8", dygraphLicense),
    ]

    /// Whether a path is one of the static files (no token needed).
    static func isPublic(_ path: String) -> Bool { files[path] != nil }

    static func addRoutes<Context: RequestContext>(to router: Router<Context>) {
        for (path, file) in files {
            let buffer = ByteBuffer(string: file.body)
            router.get(RouterPath(path)) { _, _ in
                var headers = HTTPFields()
                headers[.contentType] = file.type
                headers[.cacheControl] = path == "/" ? "no-cache" : "max-age=3600"
                // The page runs only its own scripts and talks only to its own origin.
                headers[.contentSecurityPolicy] =
                    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'"
                headers[.xContentTypeOptions] = "nosniff"
                return Response(status: .ok, headers: headers, body: ResponseBody(byteBuffer: buffer))
            }
        }
    }
}

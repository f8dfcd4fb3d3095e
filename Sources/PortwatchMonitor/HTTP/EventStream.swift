import Hummingbird
import PortwatchCore
import ServiceLifecycle

/// `GET /api/v1/stream`: Server-Sent Events. `event: sample` per interval (a compact per-port
/// document), `event: event` per monitor event, and a comment line every `keepAlive` so idle
/// proxies keep the connection. The stream ends when the client goes away, when the data
/// source's subscription ends, or on graceful shutdown.
enum EventStream {
    static func response(source: any MonitorDataSource, services: ServiceDatabase, keepAlive: Duration) async -> Response {
        let messages = await source.subscribe()
        let body = ResponseBody { writer in
            // A slow client loses the oldest chunks rather than holding the daemon's memory.
            let (chunks, feed) = AsyncStream<ByteBuffer>.makeStream(bufferingPolicy: .bufferingNewest(256))
            try await writer.write(ByteBuffer(string: ": portwatch stream\nretry: 5000\n\n"))
            await withTaskGroup(of: Void.self) { group in
                group.addTask {
                    await withGracefulShutdownHandler {
                        for await message in messages {
                            feed.yield(ByteBuffer(string: encode(message, services: services)))
                        }
                    } onGracefulShutdown: {
                        feed.finish()
                    }
                    feed.finish()
                }
                group.addTask {
                    while !Task.isCancelled {
                        try? await Task.sleep(for: keepAlive)
                        if Task.isCancelled { break }
                        feed.yield(ByteBuffer(string: ": keep-alive\n\n"))
                    }
                }
                do {
                    for await chunk in chunks { try await writer.write(chunk) }
                } catch {
                    // The client went away; nothing to answer.
                }
                group.cancelAll()
            }
            try await writer.finish(nil)
        }
        var headers = HTTPFields()
        headers[.contentType] = "text/event-stream; charset=utf-8"
        headers[.cacheControl] = "no-store"
        return Response(status: .ok, headers: headers, body: body)
    }

    /// One message as an SSE frame (JSON on one `data:` line: serialized JSON holds no newline).
    static func encode(_ message: StreamMessage, services: ServiceDatabase) -> String {
        switch message {
        case .sample(let latest):
            return "event: sample\ndata: \(APIDocuments.streamSample(latest, services: services).serialized())\n\n"
        case .event(let event):
            return "event: event\ndata: \(event.json.serialized())\n\n"
        }
    }
}

import Foundation
import NIOCore
import NIOPosix
import NIOSSL
import NIOTLS
import PortwatchCore
import X509

/// What one session (TLS handshake, then send/expect) found.
struct SessionOutcome: Sendable {
    var tls: TLSReport?
    var expect: ExpectReport?
    /// Why the session could not do what was asked (handshake failed, timed out), in words.
    var failure: String?
}

/// What the channel handler saw, handed over once on the event loop.
struct SessionObservation: Sendable {
    var chain: [[UInt8]] = []
    var version: String?
    var alpn: String?
    var handshakeSeconds: Double?
    var exchanged = false
    var received: [UInt8] = []
    var matched = false
    var error: String?
    var timedOut = false
}

/// One connection to `address` for what a connect alone cannot tell: the TLS handshake and
/// certificate, and the reply to `--send` checked against `--expect`.
func runSession(address: RemoteAddress, target: ProbeTarget, options: ProbeOptions) async -> SessionOutcome {
    var tlsContext: NIOSSLContext?
    if options.tls {
        var config = TLSConfiguration.makeClientConfiguration()
        config.minimumTLSVersion = .tlsv1
        // Our own callback replaces NIOSSL's verification: it keeps the chain so that the
        // handshake completes and the report says why the chain is not trusted.
        config.certificateVerification = .noHostnameVerification
        config.applicationProtocols = options.alpn
        do {
            tlsContext = try NIOSSLContext(configuration: config)
        } catch {
            return SessionOutcome(failure: "TLS set-up failed: \(error)")
        }
    }
    let socketAddress: SocketAddress
    do {
        socketAddress = try SocketAddress.makeAddressResolvingHost(address.description, port: Int(target.port))
    } catch {
        return SessionOutcome(failure: "cannot use address \(address): \(error)")
    }
    // SNI carries names only; an IP literal target sends none unless --sni names one.
    let sni = options.sni ?? (IPAddress(target.host) == nil ? target.host : nil)
    let timeout = TimeAmount.nanoseconds(Int64(options.timeout * 1e9))
    let eventLoop = MultiThreadedEventLoopGroup.singleton.next()
    let promise = eventLoop.makePromise(of: SessionObservation.self)
    let send = options.send
    let pattern = options.expect
    let context = tlsContext
    let bootstrap = ClientBootstrap(group: eventLoop)
        .connectTimeout(timeout)
        .channelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                let handler = ProbeSessionHandler(promise: promise, send: send, pattern: pattern,
                                                  waitsForHandshake: context != nil, timeout: timeout)
                if let context {
                    let tls = try NIOSSLClientHandler(context: context, serverHostname: sni,
                                                      customVerificationCallback: { chain, verdict in
                        handler.presented(chain)
                        verdict.succeed(.certificateVerified)
                    })
                    try channel.pipeline.syncOperations.addHandler(tls)
                }
                try channel.pipeline.syncOperations.addHandler(handler)
            }
        }
    let observation: SessionObservation
    do {
        let channel = try await bootstrap.connect(to: socketAddress).get()
        observation = try await promise.futureResult.get()
        try? await channel.close()
    } catch {
        // The connect failed after the port answered a moment ago (a restart, a flapping
        // firewall); the handler still completes the promise as the channel goes away.
        _ = try? await promise.futureResult.get()
        return SessionOutcome(failure: "the session's connect failed: \(error)")
    }
    return await outcome(of: observation, target: target, options: options)
}

/// Turns what the handler saw into the TLS and expect reports.
private func outcome(of seen: SessionObservation, target: ProbeTarget, options: ProbeOptions) async -> SessionOutcome {
    var result = SessionOutcome()
    if options.tls {
        guard let handshake = seen.handshakeSeconds else {
            result.failure = seen.error.map { "TLS handshake failed: \($0)" }
                ?? (seen.timedOut ? "TLS handshake did not finish within the timeout" : "TLS handshake failed: the server closed the connection")
            return result
        }
        let now = Date()
        do {
            let roots = try trustRoots(caFile: options.caFile)
            let facts = try await checkCertificate(chain: seen.chain, name: options.sni ?? target.host, roots: roots, now: now)
            result.tls = TLSReport(version: seen.version ?? "unknown", cipher: "", alpn: seen.alpn,
                                   subject: facts.subject, issuer: facts.issuer, sans: facts.sans,
                                   notAfter: facts.notAfter, daysLeft: facts.daysLeft,
                                   verified: facts.verifyError == nil, verifyError: facts.verifyError,
                                   handshakeMs: handshake * 1000)
        } catch {
            result.failure = "cannot read the server's certificate: \(error)"
            return result
        }
    }
    if options.expect != nil {
        if seen.exchanged || !seen.received.isEmpty {
            result.expect = ExpectReport(matched: seen.matched, received: firstLine(of: seen.received))
        } else if let error = seen.error {
            result.failure = "exchange failed: \(error)"
        } else {
            result.expect = ExpectReport(matched: false, received: "")
        }
    }
    if result.failure == nil, options.expect == nil, let error = seen.error, options.send != nil {
        result.failure = "sending failed: \(error)"
    }
    return result
}

/// Lives on one channel's event loop: records the handshake, sends, reads until the reply
/// matches, the peer closes, 64 KiB came, or the timeout passes, then completes the promise once.
final class ProbeSessionHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private static let replyLimit = 64 * 1024

    private let promise: EventLoopPromise<SessionObservation>
    private let send: [UInt8]?
    private let regex: Regex<AnyRegexOutput>?
    private let waitsForHandshake: Bool
    private let timeout: TimeAmount
    private var seen = SessionObservation()
    private var done = false
    private var activeAt: NIODeadline?
    private var timer: Scheduled<Void>?

    init(promise: EventLoopPromise<SessionObservation>, send: [UInt8]?, pattern: String?, waitsForHandshake: Bool,
         timeout: TimeAmount) {
        self.promise = promise
        self.send = send
        // The CLI and the daemon's config reject a pattern that does not compile.
        self.regex = pattern.flatMap { try? Regex($0) }
        self.waitsForHandshake = waitsForHandshake
        self.timeout = timeout
    }

    /// The chain the server presented (leaf first), from the verification callback.
    func presented(_ chain: [NIOSSLCertificate]) {
        seen.chain = chain.compactMap { try? $0.toDERBytes() }
    }

    func handlerAdded(context: ChannelHandlerContext) {
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        timer = context.eventLoop.scheduleTask(in: timeout) {
            let (handler, context) = bound.value
            handler.seen.timedOut = true
            handler.finish(context)
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        finish(context)
    }

    func channelActive(context: ChannelHandlerContext) {
        activeAt = .now()
        if !waitsForHandshake { exchange(context) }
        context.fireChannelActive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? TLSUserEvent, case .handshakeCompleted(let negotiated) = event {
            let elapsed = NIODeadline.now() - (activeAt ?? .now())
            seen.handshakeSeconds = Double(elapsed.nanoseconds) / 1e9
            seen.alpn = negotiated
            if let tls = try? context.pipeline.syncOperations.handler(type: NIOSSLHandler.self) {
                seen.version = tls.tlsVersion.map(versionName)
            }
            exchange(context)
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = unwrapInboundIn(data)
        if let bytes = buffer.readBytes(length: min(buffer.readableBytes, Self.replyLimit - seen.received.count)) {
            seen.received += bytes
        }
        guard let regex else { return }
        let text = String(decoding: seen.received, as: UTF8.self)
        if (try? regex.firstMatch(in: text)) != nil {
            seen.matched = true
            finish(context)
        } else if seen.received.count >= Self.replyLimit {
            finish(context)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        finish(context)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if seen.error == nil { seen.error = describe(error) }
        finish(context)
        context.close(promise: nil)
    }

    /// Connected (and handshaken): send, and finish at once when no reply is awaited.
    private func exchange(_ context: ChannelHandlerContext) {
        seen.exchanged = true
        if let send, !send.isEmpty {
            var buffer = context.channel.allocator.buffer(capacity: send.count)
            buffer.writeBytes(send)
            context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
        }
        if regex == nil { finish(context) }
    }

    private func finish(_ context: ChannelHandlerContext) {
        guard !done else { return }
        done = true
        timer?.cancel()
        promise.succeed(seen)
    }
}

/// `TLSv1.3`, as openssl and nmap spell versions.
private func versionName(_ version: TLSVersion) -> String {
    switch version {
    case .tlsv1: return "TLSv1.0"
    case .tlsv11: return "TLSv1.1"
    case .tlsv12: return "TLSv1.2"
    case .tlsv13: return "TLSv1.3"
    }
}

/// An error in one line, without NIOSSL's nesting where it can be avoided.
private func describe(_ error: Error) -> String {
    if let ssl = error as? NIOSSLError {
        switch ssl {
        case .handshakeFailed(let inner): return "handshake failed (\(inner))"
        case .uncleanShutdown: return "the server closed the connection without a TLS close"
        default: return "\(ssl)"
        }
    }
    if let io = error as? IOError { return io.description }
    return "\(error)"
}

/// Checks a `--ca` file before any probing: readable, with at least one certificate.
public func validateCAFile(_ path: String) throws(PortwatchError) {
    do {
        _ = try trustRoots(caFile: path)
    } catch {
        throw .usage("invalid --ca '\(path)': \(error)")
    }
}

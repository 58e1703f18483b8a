import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import ServiceLifecycle

/// An optional HTTP listener that answers `GET /metrics` with cofferd's metrics in Prometheus's text format,
/// and 404 otherwise. It serves no value and takes no request body; bind it to loopback or a private network.
public final class MetricsServer: Service, Sendable {
    private let metrics: CofferMetrics
    private let host: String
    private let port: Int
    private let logger: Logger

    public init(metrics: CofferMetrics, host: String, port: Int, logger: Logger) {
        self.metrics = metrics
        self.host = host
        self.port = port
        self.logger = logger
    }

    public func run() async throws {
        let metrics = self.metrics
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(MetricsHandler(metrics: metrics))
                }
            }
            .bind(host: host, port: port)
            .get()
        logger.info("metrics served", metadata: ["address": "http://\(host):\(port)/metrics"])
        await withTaskCancellationHandler {
            await withGracefulShutdownHandler {
                try? await channel.closeFuture.get()
            } onGracefulShutdown: {
                channel.close(promise: nil)
            }
        } onCancel: {
            channel.close(promise: nil)
        }
    }
}

private final class MetricsHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let metrics: CofferMetrics

    init(metrics: CofferMetrics) { self.metrics = metrics }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .head(let request) = unwrapInboundIn(data) else { return }
        let found = request.method == .GET && request.uri.split(separator: "?").first == "/metrics"
        let body = found ? metrics.exposition() : Array("not found; the metrics are at /metrics\n".utf8)
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: found ? "text/plain; version=0.0.4" : "text/plain")
        headers.add(name: "Content-Length", value: String(body.count))
        headers.add(name: "Connection", value: "close")
        let head = HTTPResponseHead(version: request.version, status: found ? .ok : .notFound, headers: headers)
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(bytes: body)))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in context.close(promise: nil) }
    }
}

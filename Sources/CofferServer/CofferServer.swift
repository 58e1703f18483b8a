import CofferCore
import CofferStore
import CofferWire
import Foundation
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle

/// cofferd's server: the admin and worker sockets, one task per connection.
///
/// Its life: bind both sockets (mode and group set before the first accept), serve until graceful shutdown
/// (SIGTERM or SIGINT through the service group), then stop accepting, close idle connections at once,
/// give requests in flight `shutdownGrace` to finish, close what is left, write the queued audit records,
/// and remove the socket files. The store stays open: its owner closes it last.
public final class CofferServer: Service, Sendable {
    private let configuration: ServerConfiguration
    private let store: ConnectionStore
    private let logger: Logger
    private let registry: ConnectionRegistry
    private let pool: NIOThreadPool
    private let audit: AuditBatcher
    private let dispatcher: RequestDispatcher
    private let frameBudget: FrameBudget
    public init(configuration: ServerConfiguration, store: ConnectionStore, logger: Logger) {
        self.configuration = configuration
        self.store = store
        self.logger = logger
        registry = ConnectionRegistry(limit: configuration.maxConnections)
        frameBudget = FrameBudget(limit: configuration.largeFrameBudget, threshold: configuration.largeFrameThreshold)
        pool = NIOThreadPool(numberOfThreads: max(1, configuration.storeThreads))
        audit = AuditBatcher(store: store, pool: pool, flushSize: configuration.auditFlushSize, logger: logger)
        dispatcher = RequestDispatcher(store: store, pool: pool, audit: audit, configuration: configuration,
                                       logger: logger)
    }

    public func run() async throws {
        pool.start()
        do {
            try await serve()
        } catch {
            audit.flushNow()
            try? await pool.shutdownGracefully()
            throw error
        }
        audit.flushNow()
        try? await pool.shutdownGracefully()
        logger.info("stopped")
    }

    private func serve() async throws {
        let group = MultiThreadedEventLoopGroup.singleton
        try SocketPath.prepare(configuration.adminSocket.path)
        try SocketPath.prepare(configuration.workerSocket.path)
        let admin = try await bind(configuration.adminSocket, role: .admin, group: group)
        let worker: NIOAsyncChannel<AcceptedConnection, Never>
        do {
            worker = try await bind(configuration.workerSocket, role: .worker, group: group)
        } catch {
            try? await admin.channel.close()
            unlink(configuration.adminSocket.path)
            throw error
        }
        defer {
            unlink(configuration.adminSocket.path)
            unlink(configuration.workerSocket.path)
        }
        logger.info("serving", metadata: [
            "admin_socket": "\(configuration.adminSocket.path)",
            "worker_socket": "\(configuration.workerSocket.path)",
            "key_id": "\(store.keys.keyID)",
        ])

        let registry = self.registry
        await withGracefulShutdownHandler {
            await withTaskCancellationHandler {
                await withTaskGroup(of: Void.self) { tasks in
                    tasks.addTask { await self.audit.run(interval: self.configuration.auditFlushInterval) }
                    tasks.addTask { await self.purgeTokens(every: .seconds(3600)) }
                    // Each accept loop ends when its listener closes and its connections have ended.
                    await withDiscardingTaskGroup { listeners in
                        listeners.addTask { await self.accept(on: admin, role: .admin) }
                        listeners.addTask { await self.accept(on: worker, role: .worker) }
                    }
                    tasks.cancelAll()
                }
            } onCancel: {
                admin.channel.close(promise: nil)
                worker.channel.close(promise: nil)
                registry.closeAll()
            }
        } onGracefulShutdown: {
            self.beginShutdown(admin.channel, worker.channel)
        }
    }

    /// Removes token records long past their expiry, now and then every `interval`, until cancelled.
    private func purgeTokens(every interval: Duration) async {
        let store = self.store
        let (seconds, _) = configuration.tokenRetention.components
        while !Task.isCancelled {
            do {
                let purged = try await pool.runIfActive {
                    try store.purgeTokens(expiredBefore: Date().addingTimeInterval(-TimeInterval(seconds)))
                }
                if purged > 0 { logger.info("purged expired tokens", metadata: ["count": "\(purged)"]) }
            } catch {
                logger.warning("expired tokens could not be purged", metadata: ["error": "\(error)"])
            }
            do { try await Task.sleep(for: interval) } catch { return }
        }
    }

    /// Stops accepting, closes idle connections, and bounds how long busy ones may take.
    private func beginShutdown(_ listeners: any Channel...) {
        logger.info("shutting down", metadata: ["connections": "\(registry.count)"])
        for listener in listeners { listener.close(promise: nil) }
        registry.drain()
        let grace = configuration.shutdownGrace
        let registry = self.registry
        Task {
            try? await Task.sleep(for: grace)
            registry.closeAll()
        }
    }

    struct AcceptedConnection: Sendable {
        var channel: NIOAsyncChannel<Frame, ByteBuffer>
        var peer: PeerCredentials?
    }

    private func bind(_ socket: SocketConfiguration, role: SocketRole, group: any EventLoopGroup) async throws
        -> NIOAsyncChannel<AcceptedConnection, Never>
    {
        let configuration = self.configuration
        let budget = frameBudget
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 128)
            .bind(unixDomainSocketPath: socket.path, cleanupExistingSocketFile: false) { channel in
                PeerCredentials.of(channel)
                    .map(Optional.some)
                    .recover { _ in nil }
                    .flatMapThrowing { peer in
                        try channel.pipeline.syncOperations.addHandler(
                            FrameReader(maxFrameSize: role == .admin ? configuration.maxFrameSize
                                                                     : configuration.workerMaxFrameSize,
                                        budget: budget,
                                        readTimeout: configuration.readTimeout,
                                        idleTimeout: configuration.idleTimeout))
                        // At most two frames wait per connection before cofferd stops reading its socket, so
                        // one client cannot make cofferd hold more than a few frames' worth of memory.
                        let async = try NIOAsyncChannel<Frame, ByteBuffer>(
                            wrappingChannelSynchronously: channel,
                            configuration: .init(backPressureStrategy: .init(lowWatermark: 1, highWatermark: 2)))
                        return AcceptedConnection(channel: async, peer: peer)
                    }
            }
        do {
            try SocketPath.restrict(socket)
        } catch {
            try? await channel.channel.close()
            throw error
        }
        return channel
    }

    private func accept(on listener: NIOAsyncChannel<AcceptedConnection, Never>, role: SocketRole) async {
        do {
            try await listener.executeThenClose { inbound in
                try await withThrowingDiscardingTaskGroup { connections in
                    for try await connection in inbound {
                        connections.addTask { await self.serve(connection, role: role) }
                    }
                }
            }
        } catch {
            logger.error("listener failed", metadata: ["socket": "\(role.rawValue)", "error": "\(error)"])
        }
    }

    private func serve(_ connection: AcceptedConnection, role: SocketRole) async {
        let channel = connection.channel.channel
        guard let peer = connection.peer else {
            logger.warning("no peer credentials; connection closed", metadata: ["socket": "\(role.rawValue)"])
            try? await connection.channel.executeThenClose { _, _ in }
            return
        }
        guard registry.admit(channel) else {
            try? await connection.channel.executeThenClose { _, outbound in
                let error = CofferError(.unavailable,
                                        "cofferd is serving the most connections it allows (\(configuration.maxConnections)) or is shutting down; try again later")
                try await outbound.write(Self.frame(Self.errorResponse(error)))
            }
            return
        }
        defer { registry.remove(channel) }
        do {
            try await connection.channel.executeThenClose { inbound, outbound in
                do {
                    for try await frame in inbound {
                        guard registry.beginRequest(channel) else { break }
                        let response: Coffer_V1_Response
                        do throws(CofferError) {
                            let request = try Framing.decode(Coffer_V1_Request.self, from: frame.bytes.readableBytesView)
                            response = await dispatcher.handle(request, role: role, peer: peer)
                        } catch {
                            // A frame that is not a Request: answer with id 0 and keep reading, since the framing
                            // itself is intact.
                            response = Self.errorResponse(error)
                        }
                        try await outbound.write(Self.frame(response))
                        guard registry.endRequest(channel) else { break }
                    }
                } catch let error as CofferError {
                    // The framing broke (a bad length prefix, a deadline): say why, then close.
                    logger.info("connection closed", metadata: [
                        "socket": "\(role.rawValue)", "uid": "\(peer.uid)", "pid": "\(peer.pid)",
                        "reason": "\(error.message)",
                    ])
                    try? await outbound.write(Self.frame(Self.errorResponse(error)))
                }
            }
        } catch {
            logger.debug("connection ended", metadata: ["socket": "\(role.rawValue)", "error": "\(error)"])
        }
    }

    static func errorResponse(_ error: CofferError) -> Coffer_V1_Response {
        var response = Coffer_V1_Response()
        response.status = Coffer_V1_Status(error)
        return response
    }

    static func frame(_ response: Coffer_V1_Response) -> ByteBuffer {
        // Serialising a message built here cannot fail; if it ever did, the client gets a bare INTERNAL.
        let bytes = (try? Framing.frame(response)) ?? Framing.varint(4) + [0x12, 0x02, 0x08, 0x0d]
        return ByteBuffer(bytes: bytes)
    }
}

import CCofferShims
import CofferCore
import CofferStore
import CofferWire
import Foundation
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import Synchronization

/// cofferd's server: the admin and worker sockets.
///
/// Its life: bind both sockets (mode and group set before the first accept) and serve until graceful
/// shutdown (SIGTERM, SIGINT or SIGHUP through the service group); then stop accepting, tell every client to
/// drain (read nothing more, answer what was read, close), give them `shutdownGrace`, close what is left,
/// and remove the socket files. The store and the writer stay up: their services stop after this one.
public final class CofferServer: Service, Sendable {
    private let configuration: ServerConfiguration
    private let store: ConnectionStore
    private let logger: Logger
    private let admission: Admission
    private let background: NIOThreadPool
    private let pipeline: RequestPipeline
    private let frameBudget: FrameBudget
    private let heldRefusals = Atomic<Int>(0)
    /// The threads that serve clients.
    private let eventLoops: MultiThreadedEventLoopGroup

    public init(
        configuration: ServerConfiguration,
        store: ConnectionStore,
        journal: AuditJournal,
        commits: CommitQueue,
        logger: Logger,
        clock: @escaping WallClock = { Date() }
    ) {
        self.configuration = configuration
        self.store = store
        self.logger = logger
        admission = Admission(configuration: configuration)
        frameBudget = FrameBudget(limit: configuration.largeFrameBudget, threshold: configuration.largeFrameThreshold)
        background = NIOThreadPool(numberOfThreads: max(1, configuration.backgroundThreads))
        eventLoops = MultiThreadedEventLoopGroup(numberOfThreads: max(1, configuration.eventLoops))
        pipeline = RequestPipeline(
            store: store,
            journal: journal,
            commits: commits,
            background: background,
            configuration: configuration,
            logger: logger,
            clock: clock
        )
        if let metrics = configuration.metrics {
            let (admission, hub, replication) = (self.admission, pipeline.watches, configuration.replication)
            metrics.sample { metrics in
                for socket in SocketRole.allCases { metrics.set(clients: admission.count(socket), socket: socket) }
                metrics.set(revision: store.revision, watches: hub.count)
                if let replication { metrics.set(cluster: replication.snapshot, now: Date()) }
            }
        }
    }

    public func run() async throws {
        background.start()
        defer {
            background.shutdownGracefully { _ in }
            eventLoops.shutdownGracefully { _ in }
        }
        let admin = try await bind(.admin)
        let worker: any Channel
        do {
            worker = try await bind(.worker)
        } catch {
            try? await admin.close()
            unlink(configuration.adminSocket.path)
            throw error
        }
        logger.info(
            "serving",
            metadata: [
                "admin_socket": "\(configuration.adminSocket.path)",
                "worker_socket": "\(configuration.workerSocket.path)",
                "key_id": "\(store.keys.keyID)",
            ]
        )
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.reclaimMemory() }
            try? await gracefulShutdown()
            group.cancelAll()
        }
        await drain(listeners: [admin, worker])
        unlink(configuration.adminSocket.path)
        unlink(configuration.workerSocket.path)
        logger.info("stopped")
    }

    /// Gives memory back to the system after many clients have gone (a flood that ended): what they held
    /// was freed, but the allocator keeps freed memory for reuse unless asked to return it.
    private func reclaimMemory() async {
        var peak = 0
        while !Task.isCancelled {
            do { try await Task.sleep(for: .seconds(1)) } catch { return }
            let count = admission.count
            peak = max(peak, count)
            if peak - count >= 64, count <= peak / 2 {
                coffer_release_free_memory()
                peak = count
            }
        }
    }

    /// Admits no one more, drains every client within the grace period, then closes what is left and stops
    /// listening. The listeners stay open meanwhile: a client that connected just before (still in the accept
    /// queue) is accepted and told that cofferd is shutting down, rather than dropped without a word.
    private func drain(listeners: [any Channel]) async {
        let clients = admission.beginDrain()
        logger.info("shutting down", metadata: ["clients": "\(clients.count)"])
        for client in clients { client.channel.pipeline.fireUserInboundEventTriggered(ClientEvent.drain) }
        let admission = self.admission
        let grace = configuration.shutdownGrace
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await admission.waitUntilEmpty() }
            group.addTask { try? await Task.sleep(for: grace) }
            await group.next()
            group.cancelAll()
        }
        let left = admission.clients
        if !left.isEmpty {
            logger.warning("clients closed at the end of the grace period", metadata: ["clients": "\(left.count)"])
            for client in left { client.channel.close(promise: nil) }
            await admission.waitUntilEmpty()
        }
        for listener in listeners { try? await listener.close() }
        pipeline.denials.writeAll()
    }

    private func bind(_ role: SocketRole) async throws -> any Channel {
        let socket = configuration.socket(role)
        try SocketPath.prepare(socket.path)
        let configuration = self.configuration
        let channel = try await ServerBootstrap(group: eventLoops)
            .serverChannelOption(.backlog, value: 256)
            .childChannelOption(.maxMessagesPerRead, value: 1)
            .childChannelOption(
                .recvAllocator,
                value: FixedSizeRecvByteBufferAllocator(capacity: configuration.readChunkSize)
            )
            .childChannelOption(
                .writeBufferWaterMark,
                value: .init(low: configuration.maxUnwrittenBytes / 2, high: configuration.maxUnwrittenBytes)
            )
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            .childChannelInitializer { channel in self.accept(channel, role: role) }
            .bind(unixDomainSocketPath: socket.path, cleanupExistingSocketFile: false)
            .get()
        do {
            try SocketPath.restrict(socket)
        } catch {
            try? await channel.close()
            throw error
        }
        return channel
    }

    /// A new client: its credentials from the kernel first, then admission, and only then a handler and its
    /// budget.
    private func accept(_ channel: any Channel, role: SocketRole) -> EventLoopFuture<Void> {
        PeerCredentials.of(channel).flatMapThrowing { peer in
            switch self.admission.admit(channel, socket: role, peer: peer) {
            case .refused(let error):
                self.refuse(channel, role: role, peer: peer, error)
            case .admitted(let slot, let evicted):
                // However the channel ends (even before its handler sees it active), its place is given back.
                let admission = self.admission
                channel.closeFuture.whenComplete { _ in admission.remove(slot) }
                evicted?.channel.pipeline.fireUserInboundEventTriggered(ClientEvent.evict)
                try channel.pipeline.syncOperations.addHandler(
                    ClientHandler(
                        pipeline: self.pipeline,
                        identity: ClientIdentity(socket: role, peer: peer),
                        slot: slot,
                        admission: self.admission,
                        budget: self.frameBudget,
                        logger: self.logger
                    )
                )
            }
        }.flatMapErrorThrowing { error in
            self.logger.warning("client closed: no peer credentials", metadata: ["socket": "\(role.rawValue)"])
            channel.close(promise: nil)
        }
    }

    /// Tells a refused client why and closes it. A uid refused by an allow list is audited, counted with the
    /// other refusals of that uid, and told once the record is written (unless too many already wait).
    private func refuse(_ channel: any Channel, role: SocketRole, peer: PeerCredentials, _ error: CofferError) {
        let answer = {
            channel.writeAndFlush(RequestPipeline.errorFrame(error)).whenComplete { _ in channel.close(promise: nil) }
        }
        guard error.code == .permissionDenied else { return answer() }
        var event = AuditEvent(time: Date(), socket: role, action: .connect, peerUID: peer.uid, peerPID: peer.pid)
        event.outcome = error.code
        let written = pipeline.denials.add(event, on: channel.eventLoop)
        guard heldRefusals.add(1, ordering: .relaxed).newValue <= Self.maxHeldRefusals else {
            heldRefusals.subtract(1, ordering: .relaxed)
            return answer()
        }
        written.whenComplete { _ in
            self.heldRefusals.subtract(1, ordering: .relaxed)
            answer()
        }
    }

    /// Refused clients held until their record is written, at most.
    private static let maxHeldRefusals = 256
}

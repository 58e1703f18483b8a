import CofferConnections
import CofferCore
import CofferStore
import CofferWire
import Foundation
import NIOCore

/// How cofferd serves. Every default is safe for a sidecar on a shared host, and the command line takes its
/// defaults from here.
public struct ServerConfiguration: Sendable {
    /// The admin socket: writes, grants, tokens, list and audit; never Get.
    public var adminSocket: SocketConfiguration
    /// The worker socket: Get and Health.
    public var workerSocket: SocketConfiguration
    /// The uids allowed on the admin socket, read from the kernel (SO_PEERCRED) when a client connects; any
    /// other is refused before it can send anything. Default: cofferd's own uid and root.
    public var adminUIDs: Set<UInt32>
    /// When not empty, the only uids allowed on the worker socket (checked when a client connects).
    public var workerUIDs: Set<UInt32> = []
    /// When not empty, the only primary gids allowed on the worker socket.
    public var workerGIDs: Set<UInt32> = []

    /// The most bytes one frame may hold on the admin socket; a longer length prefix is refused before
    /// anything is allocated.
    public var maxFrameSize: Int = Framing.defaultMaxFrameSize
    /// The same on the worker socket, which serves only Get and Health: their requests are a connection name
    /// and a token, so a worker never needs a large frame and cannot make cofferd hold one.
    public var workerMaxFrameSize: Int = 64 * 1024
    /// The most bytes of large frames (over `largeFrameThreshold`) held at once across all clients; a large
    /// frame that does not fit is refused with RESOURCE_EXHAUSTED and its client closed.
    public var largeFrameBudget: Int = 64 * 1024 * 1024
    /// Frames up to this size need no share of `largeFrameBudget`.
    public var largeFrameThreshold: Int = 64 * 1024

    /// The most clients served at once on the admin socket; the worker socket's clients never take these.
    public var maxAdminClients: Int = 64
    /// The most clients served at once on the worker socket. When it is full, the client idle the longest
    /// is closed to admit a new one; when none is idle, the new one is told UNAVAILABLE.
    public var maxWorkerClients: Int = 1024
    /// The most worker-socket clients of one uid; past it, that uid's client idle the longest makes room.
    public var maxWorkerClientsPerUID: Int = 1024

    /// A client that makes no request but Health for this long is closed: a trickle of Health frames does not
    /// hold a client open.
    public var idleTimeout: Duration = .seconds(300)
    /// A frame that was started must be complete within this time, counted only while cofferd is reading
    /// that client; otherwise it is told DEADLINE_EXCEEDED and closed.
    public var readTimeout: Duration = .seconds(10)
    /// A client that takes none of its answers for this long (cofferd cannot write to it) is closed.
    public var writeTimeout: Duration = .seconds(30)
    /// On SIGTERM, SIGINT or SIGHUP, clients get this long to receive the answers to what they sent before
    /// they are closed.
    public var shutdownGrace: Duration = .seconds(10)

    /// The most requests of one client taken in one turn (decoded, served in one batch, answered with one
    /// write). What a client pipelines beyond it waits in its socket.
    public var maxRequestsPerTurn: Int = 64
    /// A turn stops taking requests once its answers reach this many bytes.
    public var maxAnswerBytesPerTurn: Int = 16 * 1024
    /// Answers written but not yet taken by a client, past which cofferd stops reading it (NIO's high
    /// watermark; it resumes below half of it).
    public var maxUnwrittenBytes: Int = 16 * 1024
    /// Bytes one socket read brings in at most.
    public var readChunkSize: Int = 16 * 1024

    /// Denials of callers that have not proven who they are (bad tokens, malformed frames on the worker
    /// socket) from one uid within this interval share one counted audit record, and are answered when it is
    /// written.
    public var denialAggregationInterval: Duration = .milliseconds(500)
    /// The time to live of a token issued without one.
    public var defaultTokenTTL: Duration = .seconds(3600)
    /// Token records are removed this long after their expiry, checked at start and then every hour.
    public var tokenRetention: Duration = .seconds(24 * 3600)
    /// Watches open at once on the worker socket, and per token.
    public var maxWatches: Int = 1024
    public var maxWatchesPerToken: Int = 16
    /// How often a watch with nothing to tell sends a heartbeat with the newest revision.
    public var watchHeartbeat: Duration = .seconds(10)
    /// Events a watch writes while its client takes none before it is ended (the client resumes from the last
    /// revision it saw).
    public var maxWatchBacklog: Int = 4096
    /// Where requests, latencies, clients and the cluster's state are counted, when metrics are served.
    public var metrics: CofferMetrics?
    /// In a cluster: how this node stands with the cluster's log; values are served only while it is current
    /// enough. Nil for a single cofferd.
    public var replication: ReplicationStatus?
    /// The connection types writes are checked against: the built-in ones, and any from `--types FILE`.
    public var types: TypeRegistry = .builtIn
    /// Threads that open sealed values and run long reads (List).
    public var backgroundThreads: Int = 2
    /// Threads that serve clients: each reads, serves and answers its clients' requests with no hand-off to
    /// another thread, as Redis's single loop does. One per core by default.
    public var eventLoops: Int = System.coreCount

    public init(
        adminSocket: SocketConfiguration,
        workerSocket: SocketConfiguration,
        adminUIDs: Set<UInt32> = [UInt32(getuid()), 0]
    ) {
        self.adminSocket = adminSocket
        self.workerSocket = workerSocket
        self.adminUIDs = adminUIDs
    }

    /// The socket for `role`.
    func socket(_ role: SocketRole) -> SocketConfiguration {
        role == .admin ? adminSocket : workerSocket
    }

    func maxFrameSize(_ role: SocketRole) -> Int {
        role == .admin ? maxFrameSize : workerMaxFrameSize
    }
}

/// One listening Unix socket: a path in the file system (never an abstract socket), its mode and group.
public struct SocketConfiguration: Sendable {
    public var path: String
    /// The socket file's mode: 0600 (its owner only) for the admin socket, at most 0660 for the worker socket.
    public var mode: mode_t
    /// The group to give the socket file, or nil to leave cofferd's own.
    public var group: gid_t?

    public init(path: String, mode: mode_t, group: gid_t? = nil) {
        self.path = path
        self.mode = mode
        self.group = group
    }
}

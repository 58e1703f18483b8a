import CofferWire
import Foundation

/// How cofferd serves. Every default is safe for a sidecar on a shared host.
public struct ServerConfiguration: Sendable {
    /// The admin socket: writes, grants, tokens, list and audit; never Get.
    public var adminSocket: SocketConfiguration
    /// The worker socket: Get and Health.
    public var workerSocket: SocketConfiguration
    /// The uids allowed on the admin socket, read from the kernel (SO_PEERCRED). Default: cofferd's own
    /// uid and root.
    public var adminUIDs: Set<UInt32>
    /// The most bytes one frame may hold on the admin socket; a longer length prefix is refused before
    /// anything is allocated.
    public var maxFrameSize: Int = Framing.defaultMaxFrameSize
    /// The same on the worker socket, which serves only Get and Health: their requests are a connection name
    /// and a token, so a worker never needs a large frame and cannot make cofferd hold one.
    public var workerMaxFrameSize: Int = 64 * 1024
    /// The most bytes of large frames (over `largeFrameThreshold`) held at once across all connections; a
    /// large frame that does not fit is refused with RESOURCE_EXHAUSTED and its connection closed.
    public var largeFrameBudget: Int = 64 * 1024 * 1024
    /// Frames up to this size need no share of `largeFrameBudget`.
    public var largeFrameThreshold: Int = 64 * 1024
    /// The most connections served at once, over both sockets; one more is told UNAVAILABLE and closed.
    public var maxConnections: Int = 256
    /// A connection that sends nothing for this long is closed.
    public var idleTimeout: Duration = .seconds(300)
    /// A frame that was started must be complete within this time, or the connection is closed.
    public var readTimeout: Duration = .seconds(10)
    /// On SIGTERM or SIGINT, requests in flight get this long to finish before their connections are closed.
    public var shutdownGrace: Duration = .seconds(10)
    /// Records of requests that change nothing (gets, denials) are written together at this interval, so
    /// that a get does not pay an fsync.
    public var auditFlushInterval: Duration = .seconds(1)
    /// A batch this large is written without waiting for the interval.
    public var auditFlushSize: Int = 512
    /// The time to live of a token issued without one.
    public var defaultTokenTTL: Duration = .seconds(3600)
    /// Token records are removed this long after their expiry, checked at start and then every hour.
    public var tokenRetention: Duration = .seconds(24 * 3600)
    /// Threads that run store operations, which may block on the disk or on another writer.
    public var storeThreads: Int = 4

    public init(adminSocket: SocketConfiguration, workerSocket: SocketConfiguration,
                adminUIDs: Set<UInt32> = [UInt32(getuid()), 0])
    {
        self.adminSocket = adminSocket
        self.workerSocket = workerSocket
        self.adminUIDs = adminUIDs
    }
}

/// One listening Unix socket: a path in the file system (never an abstract socket), its mode and group.
public struct SocketConfiguration: Sendable {
    public var path: String
    /// The socket file's mode: 0600 (its owner only) for the admin socket, 0660 for the worker socket.
    public var mode: mode_t
    /// The group to give the socket file, or nil to leave cofferd's own.
    public var group: gid_t?

    public init(path: String, mode: mode_t, group: gid_t? = nil) {
        self.path = path
        self.mode = mode
        self.group = group
    }
}

/// Which socket a connection came in on; it decides which operations it may call.
public enum SocketRole: String, Sendable {
    case admin
    case worker
}

import Foundation

/// How a connection store is opened. Every default is safe for a production sidecar.
public struct StoreConfiguration: Sendable {
    /// The data directory: mode 0700, holding the LMDB files (0600) and, by default, the key file.
    public var directory: String
    /// The most the store may hold, in bytes: its map grows up to this while cofferd serves. A write past it
    /// fails with RESOURCE_EXHAUSTED and changes nothing, except that deletes and revocations may use
    /// `reserve` beyond it, so that room can always be made.
    public var mapSize: Int
    /// The map's size when the store opens (raised to what the file already holds).
    public var initialMapSize: Int {
        min(mapSize, Self.defaultInitialMapSize)
    }
    /// What deletes and revocations may use beyond `mapSize` when the map is full.
    public var reserve: Int {
        max(Self.minimumReserve, mapSize / 64)
    }
    /// Bounds on what one connection and one token may be.
    public var limits: StoreLimits
    /// After a rotation, values sealed to the superseded generation's public key are still taken for this
    /// long, so that a client that fetched the key just before is not refused.
    public var sealedKeyGrace: Duration
    /// The source of the current time; tests move it to expire tokens.
    public var clock: @Sendable () -> Date

    public static let defaultMapSize = 1 << 30
    public static let defaultSealedKeyGrace = Duration.seconds(24 * 3600)
    static let defaultInitialMapSize = 64 << 20
    static let minimumReserve = 1 << 20

    public init(
        directory: String,
        mapSize: Int = StoreConfiguration.defaultMapSize,
        limits: StoreLimits = StoreLimits(),
        sealedKeyGrace: Duration = StoreConfiguration.defaultSealedKeyGrace,
        clock: @escaping @Sendable () -> Date = { Date() }
    ) {
        self.directory = directory
        self.mapSize = mapSize
        self.limits = limits
        self.sealedKeyGrace = sealedKeyGrace
        self.clock = clock
    }
}

/// Bounds on what a connection or a token may be, checked before anything is opened or written.
public struct StoreLimits: Sendable {
    /// Fields in one connection.
    public var maxFields: Int = 64
    /// Bytes in one field's value.
    public var maxValueBytes: Int = 64 * 1024
    /// Bytes in all of one connection's values together.
    public var maxConnectionBytes: Int = 1024 * 1024
    /// The longest time to live a workflow token may have.
    public var maxTokenTTL: Duration = .seconds(30 * 24 * 3600)
    /// Audit records kept; the oldest are dropped past this.
    public var maxAuditRecords: Int = 1_000_000
    /// Changes the change feed keeps; the oldest are dropped past this, and a watch that resumes from before
    /// the oldest kept is told to start over.
    public var maxChangeRecords: Int = 100_000

    public init() {}
}

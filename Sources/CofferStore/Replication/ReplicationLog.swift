import CofferCore
import CofferCrypto
import Foundation

/// A cluster's replication log as the store sees it: batches of records in revision order, gapless, in a
/// database every node shares but none trusts for integrity (each batch is linked to the one before it by a
/// keyed hash only the nodes can make). `CofferReplication` implements it over PostgreSQL.
public protocol ReplicationLog: Sendable {
    /// Appends `entry` if the log ends at revision `entry.first - 1`, in one transaction, and returns once the
    /// database has committed it. Throws `ReplicationBehind` when the log has moved past that (this node must
    /// catch up and try again), DATA_LOSS when it ends before it (it was rolled back), UNAVAILABLE when the
    /// database cannot be reached. Blocks.
    func append(_ entry: ReplicationEntry) throws
    /// The entries after `revision`, in order, at most `limit`. Blocks.
    func entries(after revision: UInt64, limit: Int) throws -> [ReplicationEntry]
}

/// One batch of the log: the revisions it holds, its bytes (a `ReplicatedBatch`), and its link.
public struct ReplicationEntry: Sendable, Equatable {
    public var first: UInt64
    public var last: UInt64
    public var batch: [UInt8]
    public var link: [UInt8]

    public init(first: UInt64, last: UInt64, batch: [UInt8], link: [UInt8]) {
        self.first = first
        self.last = last
        self.batch = batch
        self.link = link
    }
}

/// The log has moved past this node's revision: another node wrote first.
public struct ReplicationBehind: Error, Sendable {
    public var head: UInt64

    public init(head: UInt64) { self.head = head }
}

import CofferCore
import CofferCrypto
import Foundation

/// A cluster's replication log as the store sees it: batches of records in revision order, gapless, in a
/// database every node shares but none trusts for integrity (each batch is linked to the one before it by a
/// keyed hash only the nodes can make). `CofferReplication` implements it over PostgreSQL; tests use an
/// in-process one.
///
/// Every method is asynchronous and must return promptly once its task is cancelled (a query in flight is
/// abandoned, its connection closed): callers bound each call with a deadline (`LogDeadline`).
public protocol ReplicationLog: Sendable {
    /// Appends `entry` if the log ends where this node does (`after`: revision `entry.first - 1` and that
    /// batch's link), in one transaction, and returns once the database has committed it. Throws
    /// `LogRefusal.behind` when the log has moved past that (this node must catch up and try again),
    /// `.rolledBack` when it ends before it, `.diverged` when it ends at the same revision with another batch,
    /// `.missingHead` when the batch its head names is gone, and UNAVAILABLE when the database cannot be used.
    func append(_ entry: ReplicationEntry, after position: LogPosition) async throws
    /// The log's head and the entries after `revision`, at most `limit`, in order, read in one snapshot, so that
    /// the head and the entries agree.
    func read(after revision: UInt64, limit: Int) async throws -> LogSlice
    /// Calls `notified` with the revision of every batch appended from now on (by any node), until the task is
    /// cancelled or the database cannot be used (then it throws). Notifications may be lost: readers also poll.
    func follow(_ notified: @escaping @Sendable (UInt64) -> Void) async throws
}

/// Where a log (or a node) ends: the last revision and the link of the batch that holds it (empty at 0).
public struct LogPosition: Sendable, Equatable, CustomStringConvertible {
    public var revision: UInt64
    public var link: [UInt8]

    public init(revision: UInt64, link: [UInt8]) {
        self.revision = revision
        self.link = link
    }

    public static let start = LogPosition(revision: 0, link: [])

    public var description: String { "revision \(revision)" }
}

/// What one read of the log saw: its head (with the link of the batch at the head, nil when that batch is
/// missing) and the entries asked for.
public struct LogSlice: Sendable, Equatable {
    public var head: UInt64
    public var headLink: [UInt8]?
    public var entries: [ReplicationEntry]

    public init(head: UInt64, headLink: [UInt8]?, entries: [ReplicationEntry]) {
        self.head = head
        self.headLink = headLink
        self.entries = entries
    }
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

/// Why the log did not take an append.
public enum LogRefusal: Error, Sendable, Equatable {
    /// Another node wrote first: the log's head is past this node's revision.
    case behind(head: UInt64)
    /// The log ends before this node's revision: it was rolled back or emptied.
    case rolledBack(head: UInt64)
    /// The log ends at this node's revision with a batch other than the one this node holds.
    case diverged(at: UInt64)
    /// The log's head names a revision whose batch is not there.
    case missingHead(head: UInt64)
}

/// What a node concludes from comparing where it is with one read of the log: one pure function, so that the
/// writer's check before an append and the follower's check after a read cannot disagree.
public enum LogVerdict: Sendable, Equatable {
    /// The log ends where the node does.
    case current
    /// The log holds entries after the node's revision; apply them (more may follow).
    case behind(entries: [ReplicationEntry])
    /// DATA_LOSS: the log cannot be followed; nothing of it may be applied, and the node fails closed.
    case refused(LogRefusal)
    /// DATA_LOSS: the log's head is past the node, and the entries that should follow the node are missing.
    case gap(expected: UInt64, found: UInt64?, head: UInt64)

    /// Compares the node's position `node`, read *before* the log was, with `slice`. A node's own writes are
    /// committed in the log before its store, so a log read after the node's position was taken ends at or past
    /// it unless it was rolled back.
    public static func of(node: LogPosition, slice: LogSlice) -> LogVerdict {
        if slice.head < node.revision { return .refused(.rolledBack(head: slice.head)) }
        if slice.head == node.revision {
            guard node.revision > 0 else { return .current }
            guard let link = slice.headLink else { return .refused(.missingHead(head: slice.head)) }
            return ConstantTime.equals(link, node.link) ? .current : .refused(.diverged(at: node.revision))
        }
        guard let first = slice.entries.first, first.first == node.revision + 1 else {
            return .gap(expected: node.revision + 1, found: slice.entries.first?.first, head: slice.head)
        }
        return .behind(entries: slice.entries)
    }
}

extension LogRefusal {
    /// What a client and the log are told: DATA_LOSS naming what is wrong (never a value), or the cause to catch
    /// up for `.behind`.
    public var error: CofferError {
        switch self {
        case .behind(let head):
            CofferError(.unavailable, "the cluster's log has moved on to revision \(head); try again")
        case .rolledBack(let head):
            CofferError(
                .dataLoss,
                "the cluster's log ends at revision \(head), before this node's: it was rolled back or emptied"
            )
        case .diverged(let revision):
            CofferError(
                .dataLoss,
                "the cluster's log holds another batch at revision \(revision) than this node applied: it was rewritten"
            )
        case .missingHead(let head):
            CofferError(
                .dataLoss,
                "the cluster's log says it reaches revision \(head) but the batch holding it is missing: its rows were removed"
            )
        }
    }
}

extension LogVerdict {
    /// DATA_LOSS for a verdict that refuses the log; nil otherwise.
    public var failure: CofferError? {
        switch self {
        case .current, .behind: nil
        case .refused(let refusal): refusal.error
        case .gap(let expected, let found?, _):
            CofferError(
                .dataLoss,
                "the cluster's log goes from this node's revision \(expected - 1) to \(found): batches were removed or the log reordered"
            )
        case .gap(let expected, nil, let head):
            CofferError(
                .dataLoss,
                "the cluster's log says it reaches revision \(head) but holds nothing after this node's \(expected - 1): its rows were removed"
            )
        }
    }
}

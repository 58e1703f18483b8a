import CofferCore
import Foundation
import Synchronization

/// How a cluster node stands with the cluster's log, and the two rules that follow from it: a node serves values
/// only while it knows it is current enough, and takes writes only while it can reach the log and follows it.
///
/// Current enough means: it has applied everything the log held when it last read it, and either it knows of
/// nothing newer or it learned of it at most `maxLag` ago (a notification, or a read that found more); and it
/// last caught up at most `staleAfter` ago (a node cut off from the database serves what it has that long, and no
/// longer). A node that met a log it cannot follow (rolled back, rewritten, cut) is failed: it serves no value
/// and takes no write until a later read finds the log whole again.
public final class ReplicationStatus: Sendable {
    /// What Health reports.
    public enum State: Sendable, Equatable {
        /// Has not caught up with the log since it joined: it serves no value.
        case joining
        case current
        /// Knows the log holds more than it has applied, for longer than it may serve values meanwhile.
        case catchingUp
        /// Cannot use the database (the reason): it serves values until `staleAfter`, and takes no writes.
        case unreachable(String)
        /// Met a log it cannot follow (the reason): no values, no writes.
        case failed(String)
    }

    /// What the node knows, at one moment.
    public struct Snapshot: Sendable, Equatable {
        /// The newest revision the log was seen to hold, and the revision this node has applied.
        public var head: UInt64 = 0
        public var applied: UInt64 = 0
        /// When the node last read the log and then had everything that read held: every change committed in
        /// the log before this moment is applied here.
        public var caughtUp: Date?
        /// Since when the node has known that the log holds more than it applied; nil when it knows of nothing.
        public var behindSince: Date?
        /// When the last notification of a batch this node had not applied came.
        public var lastNotified: Date?
        /// Set at start: whether it is behind is not known until its first read of the log.
        public var unconfirmed = false
        /// Has caught up at least once (since it started, or before a restart).
        public var ready = false
        public var unreachable: String?
        public var failure: String?

        public var lag: UInt64 { head > applied ? head - applied : 0 }
    }

    private let state = Mutex(Snapshot())
    /// The longest a node serves values without having caught up, while it can reach the database.
    public let maxLag: Duration
    /// The longest a node serves values without having caught up, when it cannot reach the database.
    public let staleAfter: Duration

    public init(maxLag: Duration = .seconds(1), staleAfter: Duration) {
        self.maxLag = maxLag
        self.staleAfter = staleAfter
    }

    public var snapshot: Snapshot { state.withLock { $0 } }

    /// The state Health reports, as of `now`.
    public func state(now: Date) -> State {
        let snapshot = self.snapshot
        if let failure = snapshot.failure { return .failed(failure) }
        if let unreachable = snapshot.unreachable { return .unreachable(unreachable) }
        guard snapshot.ready else { return .joining }
        if let since = snapshot.behindSince, now.timeIntervalSince(since) > maxLag.timeInterval { return .catchingUp }
        if snapshot.unconfirmed { return .catchingUp }
        return .current
    }

    /// UNAVAILABLE, saying why, when this node may not serve values now.
    public func checkServingValues(now: Date) throws(CofferError) {
        let snapshot = self.snapshot
        if let failure = snapshot.failure {
            throw CofferError(
                .unavailable,
                "this node stopped following the cluster's log and serves no values until it is mended: \(failure)"
            )
        }
        guard snapshot.ready, let caughtUp = snapshot.caughtUp else {
            throw CofferError(.unavailable, "this node is catching up with the cluster; try again shortly")
        }
        if let since = snapshot.behindSince, now.timeIntervalSince(since) > maxLag.timeInterval {
            throw CofferError(
                .unavailable,
                "this node is \(snapshot.lag) revisions behind the cluster's log and catching up; try again shortly"
            )
        }
        let seconds = now.timeIntervalSince(caughtUp)
        if seconds > staleAfter.timeInterval {
            throw CofferError(
                .unavailable,
                "this node has not reached the cluster's database for \(Int(seconds)) seconds, longer than it may serve values without it"
            )
        }
    }

    /// UNAVAILABLE, saying why, when this node may not take a write now: it must follow the log and not know the
    /// database to be out of reach (a write then fails at once instead of waiting out its deadline). A node
    /// behind the log may write: the log refuses an append that does not follow its head, and the node catches
    /// up before it writes again.
    public func checkWriting() throws(CofferError) {
        let snapshot = self.snapshot
        if let failure = snapshot.failure {
            throw CofferError(
                .unavailable,
                "this node stopped following the cluster's log and takes no writes until it is mended: \(failure)"
            )
        }
        if let unreachable = snapshot.unreachable {
            throw CofferError(.unavailable, "no write is taken while \(unreachable)")
        }
    }

    // MARK: What the node learns

    /// A node restarted with what it applied before: it serves that until its first read of the log says
    /// whether it is behind (for at most `maxLag`), or, if the database cannot be reached, until `staleAfter`
    /// after it last caught up.
    public func resume(applied: UInt64, caughtUp: Date?, now: Date) {
        state.withLock { snapshot in
            snapshot.applied = applied
            snapshot.head = max(snapshot.head, applied)
            snapshot.caughtUp = caughtUp
            snapshot.ready = caughtUp != nil
            snapshot.unconfirmed = true
            snapshot.behindSince = now
        }
    }

    /// The log has a batch up to `revision` (a notification): if this node has not applied it, it is behind until
    /// a read begun after now says otherwise. A notification is only news, never the head: anyone who can reach
    /// the database can send one, and only a read is taken for the log's state.
    public func notified(revision: UInt64, at time: Date) {
        state.withLock { snapshot in
            guard revision > snapshot.applied else { return }
            snapshot.lastNotified = time
            if snapshot.behindSince == nil { snapshot.behindSince = time }
        }
    }

    /// This node committed a write of its own that the log took, up to `revision`.
    public func wrote(revision: UInt64) {
        state.withLock { snapshot in
            snapshot.applied = max(snapshot.applied, revision)
            snapshot.head = max(snapshot.head, revision)
        }
    }

    /// A write could not reach the database within its deadline (or at all): writes fail at once, and Health
    /// says unreachable, until a read of the log succeeds again.
    public func writeFailed(_ reason: String) {
        state.withLock { $0.unreachable = reason }
    }

    /// A read of the log begun at `started` (which found the log's head at `head`) left this node at `applied`.
    /// When that is the head, every change committed before `started` is applied here; a notification that came
    /// after `started` may be of a batch the read did not hold, so the node counts as behind since `started`.
    public func read(started: Date, head: UInt64, applied: UInt64) {
        state.withLock { snapshot in
            snapshot.head = head
            snapshot.applied = max(snapshot.applied, applied)
            snapshot.unreachable = nil
            snapshot.unconfirmed = false
            if applied >= head {
                snapshot.caughtUp = max(snapshot.caughtUp ?? started, started)
                snapshot.ready = true
                let news = snapshot.lastNotified.map { $0 > started } ?? false
                snapshot.behindSince = news || snapshot.head > snapshot.applied ? started : nil
            } else {
                snapshot.behindSince = min(snapshot.behindSince ?? started, started)
            }
        }
    }

    /// The database could not be used for a read: the node serves what it has until `staleAfter` after it last
    /// caught up, unless it knows it is behind (then only for `maxLag`).
    public func unreachable(_ reason: String) {
        state.withLock { snapshot in
            snapshot.unreachable = reason
            if snapshot.unconfirmed {
                // Whether it is behind cannot be learned: it was current when it stopped, which is all it knows.
                snapshot.unconfirmed = false
                snapshot.behindSince = nil
            }
        }
    }

    /// The node met a log it cannot follow.
    public func fail(_ reason: String) {
        state.withLock { $0.failure = reason }
    }

    /// A read found the log whole again: the failure is over.
    public func mended() {
        state.withLock { $0.failure = nil }
    }
}

import CofferCore
import Foundation
import Synchronization

/// How a cluster node stands with the cluster's database, for Health and for the rule that values are served
/// only while the node is known to be current enough: not before it has caught up once, and not longer than
/// `staleAfter` after it last reached the database.
public final class ReplicationStatus: Sendable {
    public struct Snapshot: Sendable, Equatable {
        /// The newest revision the database was seen to hold, and the revision this node has applied.
        public var head: UInt64 = 0
        public var applied: UInt64 = 0
        /// When this node last saw the database and had everything it held.
        public var lastSync: Date?
        /// May serve values: caught up at least once, since it started or before a restart.
        public var ready = false
        /// Has compared itself with the database since it started: only then is `head` the log's.
        public var confirmed = false
        /// Why it stopped applying (a batch that failed its check), or why it cannot reach the database.
        public var failure: String?
        public var unreachable: String?

        public var lag: UInt64 { head > applied ? head - applied : 0 }
    }

    private let state = Mutex(Snapshot())
    public let staleAfter: Duration

    public init(staleAfter: Duration) { self.staleAfter = staleAfter }

    public var snapshot: Snapshot { state.withLock { $0 } }

    public func update(_ change: (inout Snapshot) -> Void) { state.withLock { change(&$0) } }

    /// UNAVAILABLE, saying why, when this node may not serve values now.
    public func checkServingValues(now: Date) throws(CofferError) {
        let snapshot = self.snapshot
        guard snapshot.ready, let lastSync = snapshot.lastSync else {
            throw CofferError(.unavailable, "this node is catching up with the cluster; try again shortly")
        }
        let seconds = now.timeIntervalSince(lastSync)
        if seconds > Double(staleAfter.wholeSeconds) {
            throw CofferError(
                .unavailable,
                "this node has not reached the cluster's database for \(Int(seconds)) seconds, longer than it may serve values without it"
            )
        }
    }
}

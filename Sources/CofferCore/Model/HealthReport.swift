import Foundation

/// What cofferd says of itself when asked whether it is serving.
public struct HealthReport: Sendable, Equatable {
    /// False when the store has failed and requests that need it are refused.
    public var serving: Bool
    public var keyID: KeyID
    /// Why it is not serving; nil while serving.
    public var reason: String?
    /// The newest revision of the change feed it holds.
    public var revision: UInt64
    /// In a cluster: how this node stands with the cluster's log; nil for a single cofferd.
    public var cluster: ClusterHealth?

    public init(serving: Bool, keyID: KeyID, reason: String? = nil, revision: UInt64 = 0, cluster: ClusterHealth? = nil)
    {
        self.serving = serving
        self.keyID = keyID
        self.reason = reason
        self.revision = revision
        self.cluster = cluster
    }
}

/// How a cluster node stands with the cluster's log.
public struct ClusterHealth: Sendable, Equatable {
    public enum State: String, Sendable {
        case current
        case catchingUp = "catching-up"
        case unreachable
        case failed
    }

    public var state: State
    /// The newest revision the log was seen to hold.
    public var head: UInt64
    /// When this node last had everything the log held.
    public var lastSync: Date?

    public init(state: State, head: UInt64, lastSync: Date?) {
        self.state = state
        self.head = head
        self.lastSync = lastSync
    }
}

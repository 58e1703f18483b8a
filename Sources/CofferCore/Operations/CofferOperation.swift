/// Which socket a client came in on; it decides which operations it may call.
public enum SocketRole: String, Sendable, CaseIterable {
    /// Writes, grants, tokens, list and audit; never Get.
    case admin
    /// Get and Health, for workflow steps.
    case worker
}

/// How an operation's audit record is written.
public enum AuditPolicy: Sendable {
    /// Not audited: it reads and changes nothing (Health).
    case none
    /// In the same transaction as the change it records, so that the change and its record stand or fall
    /// together.
    case withMutation
    /// Committed before the answer is written: a value never leaves without its record.
    case beforeAnswer
}

/// Every operation cofferd serves, with what the rest of the daemon needs to know about it: which socket
/// serves it, whether it changes the store, and how it is audited. A new operation is a new case here and a
/// handler in CofferServer; nothing else in the request path names operations.
public enum CofferOperation: String, CaseIterable, Sendable {
    case getPublicKey = "GetPublicKey"
    case put = "Put"
    case overwrite = "Overwrite"
    case delete = "Delete"
    case get = "Get"
    case list = "List"
    case grant = "Grant"
    case revoke = "Revoke"
    case issueToken = "IssueToken"
    case revokeToken = "RevokeToken"
    case audit = "Audit"
    case health = "Health"
    case rotateKey = "RotateKey"
    case keyStatus = "KeyStatus"
    case retireKey = "RetireKey"
    case update = "Update"
    case describe = "Describe"
    case listTypes = "ListTypes"
    case watch = "Watch"

    /// What the request path needs to know about one operation.
    public struct Traits: Sendable {
        /// The sockets that serve it; on another it is PERMISSION_DENIED.
        public let sockets: Set<SocketRole>
        /// Whether it changes the store: it runs in the writer's group commit and is acknowledged after the
        /// sync that covers it.
        public let mutates: Bool
        /// Whether it takes access away or frees space, so that it may use the store's reserve when the
        /// map is full.
        public let usesReserve: Bool
        public let audit: AuditPolicy
    }

    public var traits: Traits {
        switch self {
        case .get, .watch:
            Traits(sockets: [.worker], mutates: false, usesReserve: false, audit: .beforeAnswer)
        case .health:
            Traits(sockets: [.admin, .worker], mutates: false, usesReserve: false, audit: .none)
        case .getPublicKey, .list, .audit, .keyStatus, .describe, .listTypes:
            Traits(sockets: [.admin], mutates: false, usesReserve: false, audit: .beforeAnswer)
        case .put, .overwrite, .update, .grant, .issueToken, .rotateKey, .retireKey:
            Traits(sockets: [.admin], mutates: true, usesReserve: false, audit: .withMutation)
        case .delete, .revoke, .revokeToken:
            Traits(sockets: [.admin], mutates: true, usesReserve: true, audit: .withMutation)
        }
    }
}

import Foundation

/// What a committed change did, as the change feed records it under its revision: never a value or a token.
public struct ChangeEvent: Sendable, Equatable {
    public enum Kind: String, Sendable, CaseIterable {
        case connectionCreated = "connection-created"
        /// Overwritten or updated.
        case connectionChanged = "connection-changed"
        /// Deleted, with its grants.
        case connectionDeleted = "connection-deleted"
        case grantAdded = "grant-added"
        case grantRevoked = "grant-revoked"
        case tokenIssued = "token-issued"
        case tokenRevoked = "token-revoked"
    }

    /// Store-wide, gapless: each committed change gets the next one.
    public var revision: UInt64
    public var time: Date
    public var kind: Kind
    public var connection: ConnectionRef?
    public var workflow: WorkflowName?
    public var tokenID: TokenID?
    /// The connection's version after the change; 0 for a change of a grant or a token.
    public var version: UInt64

    public init(
        revision: UInt64,
        time: Date,
        kind: Kind,
        connection: ConnectionRef? = nil,
        workflow: WorkflowName? = nil,
        tokenID: TokenID? = nil,
        version: UInt64 = 0
    ) {
        self.revision = revision
        self.time = time
        self.kind = kind
        self.connection = connection
        self.workflow = workflow
        self.tokenID = tokenID
        self.version = version
    }
}

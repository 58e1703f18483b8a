import Foundation

/// What is known of a workflow token: never the token itself.
public struct TokenInfo: Sendable, Equatable {
    /// Public; names the token for revocation and in the audit trail.
    public var id: TokenID
    public var workflow: WorkflowName
    public var runID: RunID?
    public var created: Date
    public var expires: Date
    /// When it was revoked, or nil while it is live.
    public var revoked: Date?

    public init(id: TokenID, workflow: WorkflowName, runID: RunID?, created: Date, expires: Date, revoked: Date?) {
        self.id = id
        self.workflow = workflow
        self.runID = runID
        self.created = created
        self.expires = expires
        self.revoked = revoked
    }
}

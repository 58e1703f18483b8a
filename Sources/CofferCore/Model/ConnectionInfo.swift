import Foundation

/// What may be known of a connection without its values: never a value byte.
public struct ConnectionInfo: Sendable, Equatable {
    public var ref: ConnectionRef
    /// The names of its fields, sorted.
    public var fields: [FieldName]
    /// 1 when put; grows by one with every overwrite.
    public var version: UInt64
    public var created: Date
    public var updated: Date
    /// The workflows granted this connection, sorted.
    public var grants: [WorkflowName]

    public init(
        ref: ConnectionRef,
        fields: [FieldName],
        version: UInt64,
        created: Date,
        updated: Date,
        grants: [WorkflowName]
    ) {
        self.ref = ref
        self.fields = fields
        self.version = version
        self.created = created
        self.updated = updated
        self.grants = grants
    }
}

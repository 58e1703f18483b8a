import Foundation

/// What may be known of a connection without its secret values: never a secret byte.
public struct ConnectionInfo: Sendable, Equatable {
    public var ref: ConnectionRef
    /// The names of its fields, public and secret, sorted.
    public var fields: [FieldName]
    /// 1 when put; grows by one with every overwrite or update.
    public var version: UInt64
    public var created: Date
    public var updated: Date
    /// The workflows granted this connection, sorted.
    public var grants: [WorkflowName]
    /// Its type's version and variant, and its public fields with their values.
    public var shape: ConnectionShape

    public init(
        ref: ConnectionRef,
        fields: [FieldName],
        version: UInt64,
        created: Date,
        updated: Date,
        grants: [WorkflowName],
        shape: ConnectionShape = .untyped
    ) {
        self.ref = ref
        self.fields = fields
        self.version = version
        self.created = created
        self.updated = updated
        self.grants = grants
        self.shape = shape
    }

    /// The secret fields that are set, sorted.
    public var secretFields: [FieldName] { fields.filter { shape.publicFields[$0] == nil } }

    /// The type it is served as: `generic` for a connection stored before types.
    public var servedType: String { shape.isUntyped ? "generic" : ref.type }
}

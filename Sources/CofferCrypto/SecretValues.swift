import CofferCore

// The two parts of the domain model that carry secret bytes. They live beside `SecretBytes`, since only this
// module may hold libsodium's memory; everything else of the model is in CofferCore.

/// A connection's values, decrypted for a caller that was authorised to get them.
public struct ConnectionValues: Sendable {
    public var ref: ConnectionRef
    public var version: UInt64
    /// Each secret field's value, in secret storage.
    public var fields: [FieldName: SecretBytes]
    /// Its type's version and variant, and its public fields.
    public var shape: ConnectionShape
    /// The environment variable the type maps a field to, for the fields that have one.
    public var environment: [FieldName: String]

    public init(
        ref: ConnectionRef,
        version: UInt64,
        fields: [FieldName: SecretBytes],
        shape: ConnectionShape = .untyped,
        environment: [FieldName: String] = [:]
    ) {
        self.ref = ref
        self.version = version
        self.fields = fields
        self.shape = shape
        self.environment = environment
    }

    /// A field's value, public or secret, as text; nil when the connection has no such field or it is not
    /// UTF-8.
    public func text(of name: FieldName) -> String? {
        if let value = shape.publicFields[name] { return value }
        return fields[name]?.withUnsafeBytes { String(validating: $0, as: UTF8.self) }
    }

    /// Every field's name, public and secret, sorted.
    public var fieldNames: [FieldName] { (Array(fields.keys) + Array(shape.publicFields.keys)).sorted() }

    /// The type it is served as: `generic` for a connection stored before types.
    public var servedType: String { shape.isUntyped ? "generic" : ref.type }
}

extension ConnectionValues: CustomStringConvertible {
    public var description: String {
        "ConnectionValues(\(ref), version \(version), fields: \(fieldNames.map(\.rawValue)), values <redacted>)"
    }
}

/// A token as issued: what is known of it, and the token itself, which is shown once and never stored.
public struct IssuedToken: Sendable {
    public var info: TokenInfo
    public var token: SecretBytes

    public init(info: TokenInfo, token: SecretBytes) {
        self.info = info
        self.token = token
    }
}

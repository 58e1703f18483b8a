import CofferCore

// The two parts of the domain model that carry secret bytes. They live beside `SecretBytes`, since only this
// module may hold libsodium's memory; everything else of the model is in CofferCore.

/// A connection's values, decrypted for a caller that was authorised to get them.
public struct ConnectionValues: Sendable {
    public var ref: ConnectionRef
    public var version: UInt64
    /// Each field's value, in secret storage.
    public var fields: [FieldName: SecretBytes]

    public init(ref: ConnectionRef, version: UInt64, fields: [FieldName: SecretBytes]) {
        self.ref = ref
        self.version = version
        self.fields = fields
    }
}

extension ConnectionValues: CustomStringConvertible {
    public var description: String {
        "ConnectionValues(\(ref), version \(version), fields: \(fields.keys.sorted().map(\.rawValue)), values <redacted>)"
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

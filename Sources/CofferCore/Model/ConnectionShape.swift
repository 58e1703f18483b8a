/// What a connection's type made of it, besides its secret values: the type's version it was written under,
/// its auth variant, and its public fields (configuration an admin may read back). Never a secret.
public struct ConnectionShape: Sendable, Equatable {
    /// 0 for a connection stored before types existed, which is served as `generic` whatever its name says.
    public var typeVersion: UInt32
    public var variant: String
    public var publicFields: [FieldName: String]

    public init(typeVersion: UInt32, variant: String, publicFields: [FieldName: String] = [:]) {
        self.typeVersion = typeVersion
        self.variant = variant
        self.publicFields = publicFields
    }

    /// A connection stored before types: untyped, every field secret.
    public static let untyped = ConnectionShape(typeVersion: 0, variant: "")

    public var isUntyped: Bool { typeVersion == 0 }
}

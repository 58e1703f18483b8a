import CofferCore
import CofferCrypto

/// A write's fields as a client sent them: each value sealed to the daemon's public key.
public struct SealedFields: Sendable {
    public var values: [FieldName: SealedValue]

    public init(_ values: [FieldName: SealedValue]) { self.values = values }

    /// Checks the sizes against `limits`, then opens every value: sealed to the active generation's
    /// key, or to an earlier one that `accepting` still takes. Runs outside any transaction: opening a sealed
    /// box is the costly part of a write.
    public func open(
        with keys: KeyRing,
        limits: StoreLimits,
        accepting: (KeyGeneration) -> Bool = { _ in false }
    ) throws(CofferError) -> OpenedFields {
        guard values.count <= limits.maxFields else {
            throw CofferError(
                .invalidArgument,
                "a connection may have at most \(limits.maxFields) fields; this one has \(values.count)"
            )
        }
        var total = 0
        for (name, sealed) in values {
            let size = max(sealed.ciphertext.count - SealedValue.overhead, 0)
            guard size <= limits.maxValueBytes else {
                throw CofferError(
                    .invalidArgument,
                    "the value of field \(name) is larger than \(limits.maxValueBytes) bytes"
                )
            }
            total += size
        }
        guard total <= limits.maxConnectionBytes else {
            throw CofferError(
                .invalidArgument,
                "the values of a connection may total at most \(limits.maxConnectionBytes) bytes"
            )
        }
        var opened: [(FieldName, SecretBytes)] = []
        for (name, sealed) in values.sorted(by: { $0.key < $1.key }) {
            opened.append((name, try keys.open(sealed, field: name, accepting: accepting)))
        }
        return OpenedFields(values: opened)
    }
}

/// A write's fields opened and checked, sorted by name, ready to be encrypted at rest.
public struct OpenedFields: Sendable {
    let values: [(FieldName, SecretBytes)]

    init(values: [(FieldName, SecretBytes)]) { self.values = values }

    /// Fields checked by the caller (against the connection's type), to be stored as they are.
    public init(_ fields: [FieldName: SecretBytes]) { values = fields.sorted { $0.key < $1.key } }

    /// Each field's opened value.
    public var fields: [FieldName: SecretBytes] { Dictionary(uniqueKeysWithValues: values) }
}

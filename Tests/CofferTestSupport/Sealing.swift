import CofferCore
import CofferCrypto

extension KeyRing {
    /// Seals text values to this key ring, as an admin client would before a put.
    public func sealFields(_ values: [String: String]) throws -> [FieldName: SealedValue] {
        var out: [FieldName: SealedValue] = [:]
        for (name, value) in values {
            out[try FieldName(name)] = try SealedValue.seal(
                SecretBytes(copying: Array(value.utf8)),
                to: publicKey,
                keyID: keyID
            )
        }
        return out
    }
}

extension SecretBytes {
    /// The bytes as text, for comparing a value a test put with the one it got back.
    public var testText: String { withUnsafeBytes { String(decoding: $0, as: UTF8.self) } }
}

/// A key ring from a fresh random master key.
public func randomKeyRing() -> KeyRing { KeyRing(master: MasterKey.generate()) }

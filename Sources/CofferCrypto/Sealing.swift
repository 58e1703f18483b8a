internal import CSodium
import CofferCore

/// A field value as a client sends it: sealed with `crypto_box_seal` to the daemon's public key, labelled
/// with the id of the key it was sealed to.
public struct SealedValue: Sendable {
    public var keyID: KeyID
    public var ciphertext: [UInt8]

    public init(keyID: KeyID, ciphertext: [UInt8]) {
        self.keyID = keyID
        self.ciphertext = ciphertext
    }

    /// Seals `plaintext` to `publicKey` with `crypto_box_seal`: what an admin client does before a put.
    public static func seal(
        _ plaintext: SecretBytes,
        to publicKey: [UInt8],
        keyID: KeyID
    ) throws(CofferError)
        -> SealedValue
    {
        Sodium.ensureReady()
        guard publicKey.count == Int(crypto_box_publickeybytes()) else {
            throw CofferError(
                .invalidArgument,
                "public key is \(publicKey.count) bytes, expected \(crypto_box_publickeybytes())"
            )
        }
        var ciphertext = [UInt8](repeating: 0, count: plaintext.count + Int(crypto_box_sealbytes()))
        let status = plaintext.withUnsafeBytes { message in
            crypto_box_seal(
                &ciphertext,
                message.baseAddress?.assumingMemoryBound(to: UInt8.self),
                UInt64(message.count),
                publicKey
            )
        }
        guard status == 0 else { throw CofferError(.internal, "crypto_box_seal failed") }
        return SealedValue(keyID: keyID, ciphertext: ciphertext)
    }
}

extension SealedValue: CustomStringConvertible {
    public var description: String { "SealedValue(key \(keyID), \(ciphertext.count) bytes)" }
}

extension KeyRing {
    /// Opens a value a client sealed to this daemon's public key: the active generation's, or an earlier one
    /// that `accepting` still takes (during a rotation's grace period). `field` only names the value in errors.
    public func open(
        _ sealed: SealedValue,
        field: FieldName,
        accepting: (KeyGeneration) -> Bool = { _ in false }
    ) throws(CofferError) -> SecretBytes {
        guard let generation = generation(for: sealed.keyID), generation === active || accepting(generation) else {
            throw CofferError(
                .failedPrecondition,
                "field \(field) was sealed to key \(sealed.keyID), but this daemon's key is \(keyID); fetch the public key again and reseal"
            )
        }
        let publicKey = generation.publicKey
        let secretKey = generation.secretKey
        let overhead = Int(crypto_box_sealbytes())
        guard sealed.ciphertext.count >= overhead else {
            throw CofferError(
                .invalidArgument,
                "field \(field) is not a crypto_box_seal ciphertext: shorter than \(overhead) bytes"
            )
        }
        var opened = true
        let plaintext = SecretBytes(count: sealed.ciphertext.count - overhead) { message in
            secretKey.withUnsafeBytes { sk in
                let status = crypto_box_seal_open(
                    message.baseAddress!.assumingMemoryBound(to: UInt8.self),
                    sealed.ciphertext,
                    UInt64(sealed.ciphertext.count),
                    publicKey,
                    sk.baseAddress!.assumingMemoryBound(to: UInt8.self)
                )
                opened = status == 0
            }
        }
        guard opened else {
            throw CofferError(
                .invalidArgument,
                "field \(field) could not be opened: it was not sealed with crypto_box_seal to this daemon's public key"
            )
        }
        return plaintext
    }
}

extension SealedValue {
    /// The bytes `crypto_box_seal` adds to a plaintext: an ephemeral public key and a tag.
    public static var overhead: Int {
        Sodium.ensureReady()
        return Int(crypto_box_sealbytes())
    }
}

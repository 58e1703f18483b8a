internal import CSodium
import CofferCore

/// Where a stored value belongs. It is authenticated with the ciphertext, so a value copied to another
/// connection, another field or another record version fails to decrypt instead of yielding its plaintext
/// there.
public struct FieldBinding: Sendable {
    public var connection: ConnectionRef
    public var field: FieldName
    public var recordVersion: UInt64

    public init(connection: ConnectionRef, field: FieldName, recordVersion: UInt64) {
        self.connection = connection
        self.field = field
        self.recordVersion = recordVersion
    }
}

/// Encryption of values at rest with XChaCha20-Poly1305 (IETF), under the storage subkey.
///
/// A stored value is `format (1) | key id (8) | nonce (24) | ciphertext and tag`. The additional data is a
/// length-prefixed encoding of a label, the format, the key id, the connection's type and name, the field
/// name and the record version.
extension KeyRing {
    /// The stored-value format this build writes.
    public static let atRestFormat: UInt8 = 1

    private static var nonceLength: Int { Int(crypto_aead_xchacha20poly1305_ietf_npubbytes()) }
    private static var tagLength: Int { Int(crypto_aead_xchacha20poly1305_ietf_abytes()) }
    private static var headerLength: Int { 1 + KeyID.length + nonceLength }

    /// Encrypts a value for storage at `binding`.
    public func sealAtRest(_ plaintext: SecretBytes, binding: FieldBinding) -> [UInt8] {
        sealAtRest(plaintext, binding: binding, nonce: SecureRandom.bytes(Self.nonceLength))
    }

    /// The same with a given nonce: for the known-answer tests; a nonce must never be used twice.
    func sealAtRest(_ plaintext: SecretBytes, binding: FieldBinding, nonce: [UInt8]) -> [UInt8] {
        precondition(nonce.count == Self.nonceLength)
        let ad = Self.additionalData(format: Self.atRestFormat, keyID: keyID, binding: binding)
        var out = [Self.atRestFormat] + keyID.bytes + nonce
        let header = out.count
        out += [UInt8](repeating: 0, count: plaintext.count + Self.tagLength)
        var written: UInt64 = 0
        let status = out.withUnsafeMutableBufferPointer { out in
            plaintext.withUnsafeBytes { message in
                storageKey.withUnsafeBytes { key in
                    crypto_aead_xchacha20poly1305_ietf_encrypt(
                        out.baseAddress! + header,
                        &written,
                        message.baseAddress?.assumingMemoryBound(to: UInt8.self),
                        UInt64(message.count),
                        ad,
                        UInt64(ad.count),
                        nil,
                        nonce,
                        key.baseAddress!.assumingMemoryBound(to: UInt8.self)
                    )
                }
            }
        }
        precondition(
            status == 0 && Int(written) == plaintext.count + Self.tagLength,
            "crypto_aead_xchacha20poly1305_ietf_encrypt failed"
        )
        return out
    }

    /// Decrypts a stored value, refusing it unless it was written for exactly `binding` under this key.
    public func openAtRest(_ stored: [UInt8], binding: FieldBinding) throws(CofferError) -> SecretBytes {
        let place = "field \(binding.field) of \(binding.connection)"
        guard stored.count >= Self.headerLength + Self.tagLength, stored[0] == Self.atRestFormat else {
            throw CofferError(.dataLoss, "the stored value of \(place) is malformed")
        }
        let storedKeyID = KeyID(bytes: stored[1..<(1 + KeyID.length)])!
        guard storedKeyID == keyID else {
            throw CofferError(
                .failedPrecondition,
                "the stored value of \(place) was sealed with key \(storedKeyID), which this daemon does not hold"
            )
        }
        let ad = Self.additionalData(format: stored[0], keyID: storedKeyID, binding: binding)
        let nonceStart = 1 + KeyID.length
        let bodyStart = Self.headerLength
        var ok = false
        let plaintext = SecretBytes(count: stored.count - bodyStart - Self.tagLength) { message in
            stored.withUnsafeBufferPointer { stored in
                storageKey.withUnsafeBytes { key in
                    var length: UInt64 = 0
                    let status = crypto_aead_xchacha20poly1305_ietf_decrypt(
                        message.baseAddress!.assumingMemoryBound(to: UInt8.self),
                        &length,
                        nil,
                        stored.baseAddress! + bodyStart,
                        UInt64(stored.count - bodyStart),
                        ad,
                        UInt64(ad.count),
                        stored.baseAddress! + nonceStart,
                        key.baseAddress!.assumingMemoryBound(to: UInt8.self)
                    )
                    ok = status == 0 && Int(length) == message.count
                }
            }
        }
        guard ok else {
            throw CofferError(
                .dataLoss,
                "the stored value of \(place) failed its integrity check: it was altered or moved"
            )
        }
        return plaintext
    }

    static func additionalData(format: UInt8, keyID: KeyID, binding: FieldBinding) -> [UInt8] {
        var ad: [UInt8] = []
        func append(_ text: String) {
            let bytes = Array(text.utf8)
            ad += [UInt8(bytes.count >> 8), UInt8(bytes.count & 0xff)]
            ad += bytes
        }
        append("coffer.field")
        ad.append(format)
        ad += keyID.bytes
        append(binding.connection.type)
        append(binding.connection.name)
        append(binding.field.rawValue)
        ad += (0..<8).reversed().map { UInt8(truncatingIfNeeded: binding.recordVersion >> ($0 * 8)) }
        return ad
    }
}

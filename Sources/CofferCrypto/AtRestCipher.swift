internal import CSodium
import CofferCore

/// Where a stored value belongs. It is authenticated with the ciphertext, so a value copied to another
/// connection, another field, another record version or another incarnation of the connection (one from before
/// a delete) fails to decrypt instead of yielding its plaintext there.
public struct FieldBinding: Sendable {
    public var connection: ConnectionRef
    public var field: FieldName
    public var recordVersion: UInt64
    /// The random id a connection gets when it is put (16 bytes); nil only for values of format 1, which
    /// predate it and are read only to migrate them.
    public var incarnation: [UInt8]?
    /// The connection's type version, variant and public fields: a typed connection's public configuration
    /// (its base URL, say) is bound into every secret value, so that changing it in storage makes the next
    /// read fail instead of pointing a token at another server. Untyped connections bind nothing more.
    public var shape: ConnectionShape

    public init(
        connection: ConnectionRef,
        field: FieldName,
        recordVersion: UInt64,
        incarnation: [UInt8]?,
        shape: ConnectionShape = .untyped
    ) {
        self.connection = connection
        self.field = field
        self.recordVersion = recordVersion
        self.incarnation = incarnation
        self.shape = shape
    }
}

/// Encryption of values at rest with XChaCha20-Poly1305 (IETF), under a generation's storage key.
///
/// A stored value is `format (1) | key id (8) | nonce (24) | ciphertext and tag`; the key id names the
/// generation. The additional data is a length-prefixed encoding of a label, the format, the key id, the
/// connection's type and name, the field name, the record version, (from format 2) the incarnation and, for a
/// typed connection, its type version, variant and public fields.
extension KeyRing {
    /// The stored-value format this build writes.
    public static let atRestFormat: UInt8 = 2

    private static var nonceLength: Int { Int(crypto_aead_xchacha20poly1305_ietf_npubbytes()) }
    private static var aeadTagLength: Int { Int(crypto_aead_xchacha20poly1305_ietf_abytes()) }
    private static var headerLength: Int { 1 + KeyID.length + nonceLength }

    /// Encrypts a value for storage at `binding` under the active generation.
    public func sealAtRest(_ plaintext: SecretBytes, binding: FieldBinding) -> [UInt8] {
        sealAtRest(plaintext, binding: binding, nonce: SecureRandom.bytes(Self.nonceLength))
    }

    /// The same with a given nonce: for the known-answer tests; a nonce must never be used twice.
    func sealAtRest(_ plaintext: SecretBytes, binding: FieldBinding, nonce: [UInt8]) -> [UInt8] {
        precondition(nonce.count == Self.nonceLength)
        precondition(binding.incarnation?.count == Self.incarnationLength, "a value is sealed for an incarnation")
        let generation = active
        let ad = Self.additionalData(format: Self.atRestFormat, keyID: generation.keyID, binding: binding)
        var out = [Self.atRestFormat] + generation.keyID.bytes + nonce
        let header = out.count
        out += [UInt8](repeating: 0, count: plaintext.count + Self.aeadTagLength)
        var written: UInt64 = 0
        let status = out.withUnsafeMutableBufferPointer { out in
            plaintext.withUnsafeBytes { message in
                generation.storageKey.withUnsafeBytes { key in
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
            status == 0 && Int(written) == plaintext.count + Self.aeadTagLength,
            "crypto_aead_xchacha20poly1305_ietf_encrypt failed"
        )
        return out
    }

    /// The generation a stored value was sealed under, read from its key id; nil when it is malformed.
    public func generation(ofStored stored: [UInt8]) -> UInt32? {
        guard stored.count >= Self.headerLength, let keyID = KeyID(bytes: stored[1..<(1 + KeyID.length)]) else {
            return nil
        }
        return generation(for: keyID)?.number
    }

    /// Decrypts a stored value, refusing it unless it was written for exactly `binding` under a generation
    /// this ring holds. Any damage, a key id's included, is DATA_LOSS.
    public func openAtRest(_ stored: [UInt8], binding: FieldBinding) throws(CofferError) -> SecretBytes {
        let place = "field \(binding.field) of \(binding.connection)"
        let format = stored.first ?? 0
        guard stored.count >= Self.headerLength + Self.aeadTagLength, format == 1 || format == 2,
            (format == 2) == (binding.incarnation != nil)
        else {
            throw CofferError(.dataLoss, "the stored value of \(place) is malformed")
        }
        let storedKeyID = KeyID(bytes: stored[1..<(1 + KeyID.length)])!
        guard let generation = generation(for: storedKeyID) else {
            // A key id this store never had is damage, not a key that went missing: every generation a value
            // can be under stays in the ring until nothing uses it.
            throw CofferError(.dataLoss, "the stored value of \(place) names no key of this store: it was altered")
        }
        let ad = Self.additionalData(format: format, keyID: storedKeyID, binding: binding)
        let nonceStart = 1 + KeyID.length
        let bodyStart = Self.headerLength
        var ok = false
        let plaintext = SecretBytes(count: stored.count - bodyStart - Self.aeadTagLength) { message in
            stored.withUnsafeBufferPointer { stored in
                generation.storageKey.withUnsafeBytes { key in
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

    /// Bytes in an incarnation id.
    public static let incarnationLength = 16

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
        if format >= 2, let incarnation = binding.incarnation { ad += incarnation }
        let shape = binding.shape
        if format >= 2, !shape.isUntyped {
            func appendLong(_ text: String) {
                let bytes = Array(text.utf8)
                ad += (0..<4).reversed().map { UInt8(truncatingIfNeeded: bytes.count >> ($0 * 8)) }
                ad += bytes
            }
            append("typed")
            ad += (0..<4).reversed().map { UInt8(truncatingIfNeeded: shape.typeVersion >> ($0 * 8)) }
            append(shape.variant)
            appendLong(String(shape.publicFields.count))
            for (name, value) in shape.publicFields.sorted(by: { $0.key < $1.key }) {
                append(name.rawValue)
                appendLong(value)
            }
        }
        return ad
    }
}

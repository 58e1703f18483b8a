internal import CSodium
import CofferCore

/// A workflow token as issued: `cft_<id>_<secret>`. The id is public (it names the token for revocation and
/// in the audit trail); the whole token is secret and is stored only as a keyed hash.
public struct TokenMaterial: Sendable {
    /// Public: names the token for revocation and in the audit trail.
    public let id: TokenID
    /// The whole token, shown to the admin once.
    public let token: SecretBytes

    static let prefix = "cft_"

    /// A new token with a random id and 32 random secret bytes.
    public static func generate() -> TokenMaterial {
        Sodium.ensureReady()
        let idText = Hex.encode(SecureRandom.bytes(TokenID.length / 2))
        let secret = SecureRandom.secret(32)
        let encodedLength = Int(sodium_base64_encoded_len(32, sodium_base64_VARIANT_URLSAFE_NO_PADDING))
        let head = Array((prefix + idText + "_").utf8)
        let token = SecretBytes(count: head.count + encodedLength - 1) { out in
            out.copyBytes(from: head)
            // sodium_bin2base64 writes a terminating NUL: encode into a scratch buffer one byte longer.
            let scratch = SecretBytes(count: encodedLength) { scratch in
                secret.withUnsafeBytes { secret in
                    _ = sodium_bin2base64(
                        scratch.baseAddress!.assumingMemoryBound(to: CChar.self),
                        encodedLength,
                        secret.baseAddress!.assumingMemoryBound(to: UInt8.self),
                        secret.count,
                        sodium_base64_VARIANT_URLSAFE_NO_PADDING
                    )
                }
            }
            scratch.withUnsafeBytes { scratch in
                UnsafeMutableRawBufferPointer(rebasing: out[head.count...])
                    .copyMemory(from: UnsafeRawBufferPointer(rebasing: scratch[0..<(encodedLength - 1)]))
            }
        }
        // 16 lowercase hex digits by construction.
        return TokenMaterial(id: try! TokenID(idText), token: token)
    }

    /// The id of a presented token, or nil when it is not shaped like one. Reads only the public prefix.
    public static func id(of token: SecretBytes) -> TokenID? {
        token.withUnsafeBytes { bytes -> TokenID? in
            let head = Array(prefix.utf8)
            let idLength = TokenID.length
            guard bytes.count > head.count + idLength + 1,
                Array(bytes[0..<head.count]) == head,
                bytes[head.count + idLength] == UInt8(ascii: "_")
            else { return nil }
            return try? TokenID(String(decoding: bytes[head.count..<(head.count + idLength)], as: UTF8.self))
        }
    }
}

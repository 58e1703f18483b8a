internal import CSodium
import CofferCore

/// The keys derived from the master key with `crypto_kdf_derive_from_key`, one subkey per purpose:
/// the X25519 keypair admins seal values to, the key that encrypts values at rest, the key that hashes
/// workflow tokens, and the key behind the store's key check value.
public final class KeyRing: Sendable {
    /// The X25519 public key that clients seal values to with `crypto_box_seal`.
    public let publicKey: [UInt8]
    /// The id of this key generation.
    public let keyID: KeyID

    let secretKey: SecretBytes
    let storageKey: SecretBytes
    let tokenKey: SecretBytes
    let checkKey: SecretBytes

    private enum Subkey: UInt64 {
        case boxSeed = 1
        case storage = 2
        case tokenHash = 3
        case keyCheck = 4
    }

    /// Exactly 8 bytes, as `crypto_kdf_derive_from_key` requires.
    private static let context = "coffer.1"

    public init(master: MasterKey) {
        Sodium.ensureReady()
        func derive(_ id: Subkey, _ length: Int) -> SecretBytes {
            SecretBytes(count: length, guarded: true) { out in
                master.bytes.withUnsafeBytes { key in
                    Self.context.withCString { ctx in
                        let status = crypto_kdf_derive_from_key(
                            out.baseAddress!.assumingMemoryBound(to: UInt8.self),
                            length,
                            id.rawValue,
                            ctx,
                            key.baseAddress!.assumingMemoryBound(to: UInt8.self)
                        )
                        precondition(status == 0, "crypto_kdf_derive_from_key failed")
                    }
                }
            }
        }
        let seed = derive(.boxSeed, Int(crypto_box_seedbytes()))
        var publicKey = [UInt8](repeating: 0, count: Int(crypto_box_publickeybytes()))
        secretKey = SecretBytes(count: Int(crypto_box_secretkeybytes()), guarded: true) { sk in
            seed.withUnsafeBytes { seed in
                let status = crypto_box_seed_keypair(
                    &publicKey,
                    sk.baseAddress!.assumingMemoryBound(to: UInt8.self),
                    seed.baseAddress!.assumingMemoryBound(to: UInt8.self)
                )
                precondition(status == 0, "crypto_box_seed_keypair failed")
            }
        }
        self.publicKey = publicKey
        keyID = KeyID(bytes: Self.hash(publicKey, length: KeyID.length))!
        storageKey = derive(.storage, Int(crypto_aead_xchacha20poly1305_ietf_keybytes()))
        tokenKey = derive(.tokenHash, Int(crypto_generichash_keybytes()))
        checkKey = derive(.keyCheck, Int(crypto_generichash_keybytes()))
    }

    /// A value stored beside the data that proves, without revealing anything, which master key the store
    /// was created with: a keyed BLAKE2b hash of a fixed label.
    public var keyCheckValue: [UInt8] {
        Self.hash(Array("coffer key check v1".utf8), length: 32, key: checkKey)
    }

    /// Whether `value` is this key ring's key check value, compared in constant time.
    public func matchesKeyCheck(_ value: [UInt8]) -> Bool {
        ConstantTime.equals(keyCheckValue, value)
    }

    /// The keyed hash under which a workflow token is stored; the token itself is never stored.
    public func tokenDigest(_ token: SecretBytes) -> [UInt8] {
        token.withUnsafeBytes { Self.hash($0, length: 32, key: tokenKey) }
    }

    static func hash(_ input: some ByteSource, length: Int, key: SecretBytes? = nil) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: length)
        input.withUnsafeBytes { input in
            func run(_ keyPointer: UnsafePointer<UInt8>?, _ keyLength: Int) {
                let status = crypto_generichash(
                    &out,
                    length,
                    input.baseAddress?.assumingMemoryBound(to: UInt8.self),
                    UInt64(input.count),
                    keyPointer,
                    keyLength
                )
                precondition(status == 0, "crypto_generichash failed")
            }
            if let key {
                key.withUnsafeBytes { run($0.baseAddress!.assumingMemoryBound(to: UInt8.self), $0.count) }
            } else {
                run(nil, 0)
            }
        }
        return out
    }
}

/// Bytes readable through a raw buffer; lets one hash function take arrays and raw buffers alike.
protocol ByteSource {
    func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R
}

extension Array: ByteSource where Element == UInt8 {}
extension UnsafeRawBufferPointer: ByteSource {
    func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R { try body(self) }
}

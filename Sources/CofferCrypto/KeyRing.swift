internal import CSodium
import CofferCore

/// One generation of the keys derived from the master key: the X25519 keypair admins seal values to, the key
/// that encrypts values at rest, the key that hashes workflow tokens, and the key that authenticates stored
/// records. Rotation makes a new generation; older ones decrypt until nothing needs them.
public final class KeyGeneration: Sendable {
    /// 1 for the first; grows by one with every rotation.
    public let number: UInt32
    /// The X25519 public key that clients seal values to with `crypto_box_seal`.
    public let publicKey: [UInt8]
    /// The generation's public id: the first 8 bytes of BLAKE2b of the public key.
    public let keyID: KeyID

    let secretKey: SecretBytes
    let storageKey: SecretBytes
    let tokenKey: SecretBytes
    let recordKey: SecretBytes

    init(master: MasterKey, number: UInt32) {
        self.number = number
        let seed = KeyRing.derive(master, .boxSeed, generation: number, length: Int(crypto_box_seedbytes()))
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
        keyID = KeyID(bytes: KeyRing.hash(publicKey, length: KeyID.length))!
        storageKey = KeyRing.derive(
            master,
            .storage,
            generation: number,
            length: Int(crypto_aead_xchacha20poly1305_ietf_keybytes())
        )
        tokenKey = KeyRing.derive(master, .tokenHash, generation: number, length: Int(crypto_generichash_keybytes()))
        recordKey = KeyRing.derive(master, .record, generation: number, length: Int(crypto_generichash_keybytes()))
    }

    /// The keyed hash under which a workflow token is stored; the token itself is never stored.
    public func tokenDigest(_ token: SecretBytes) -> [UInt8] {
        token.withUnsafeBytes { KeyRing.hash($0, length: 32, key: tokenKey) }
    }
}

/// The keys derived from the master key with `crypto_kdf_derive_from_key`, one subkey per purpose: the key
/// generations (see `KeyGeneration`) and the keys that stay for the store's life, which prove the master key
/// (key check), authenticate the store as a whole (summary) and chain the audit trail.
public final class KeyRing: Sendable {
    /// The generation new writes use: its public key is what clients seal to.
    public let active: KeyGeneration
    /// Every generation the store still has, by number, the active one included.
    public let generations: [UInt32: KeyGeneration]

    let checkKey: SecretBytes
    let summaryKey: SecretBytes
    let auditKey: SecretBytes
    private let master: MasterKey

    enum Subkey: UInt64 {
        case boxSeed = 1
        case storage = 2
        case tokenHash = 3
        case keyCheck = 4
        case record = 5
        case summary = 6
        case audit = 7
    }

    /// Exactly 8 bytes, as `crypto_kdf_derive_from_key` requires.
    private static let context = "coffer.1"

    /// The key ring with generations `numbers` (generation 1 alone by default), `active` the one in use.
    public init(master: MasterKey, generations numbers: [UInt32] = [1], active: UInt32 = 1) {
        Sodium.ensureReady()
        precondition(numbers.contains(active), "the active generation must be one of the generations")
        self.master = master
        var generations: [UInt32: KeyGeneration] = [:]
        for number in numbers { generations[number] = KeyGeneration(master: master, number: number) }
        self.generations = generations
        self.active = generations[active]!
        checkKey = Self.derive(master, .keyCheck, generation: 1, length: Int(crypto_generichash_keybytes()))
        summaryKey = Self.derive(master, .summary, generation: 1, length: Int(crypto_generichash_keybytes()))
        auditKey = Self.derive(master, .audit, generation: 1, length: Int(crypto_generichash_keybytes()))
    }

    /// The same master key with these generations, `active` the one in use.
    public func with(generations numbers: [UInt32], active: UInt32) -> KeyRing {
        KeyRing(master: master, generations: numbers, active: active)
    }

    /// The active generation's public key, which clients seal to.
    public var publicKey: [UInt8] { active.publicKey }
    /// The active generation's key id.
    public var keyID: KeyID { active.keyID }

    /// The generation whose public key has this id, if the store still has it.
    public func generation(for keyID: KeyID) -> KeyGeneration? {
        generations.values.first { $0.keyID == keyID }
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

    /// The active generation's keyed hash of a token.
    public func tokenDigest(_ token: SecretBytes) -> [UInt8] {
        active.tokenDigest(token)
    }

    /// Generation 1 uses the subkey ids its first release used; later generations put their number above the
    /// purpose, so that no two keys of any generation share an id.
    static func derive(_ master: MasterKey, _ purpose: Subkey, generation: UInt32, length: Int) -> SecretBytes {
        let id = generation == 1 ? purpose.rawValue : UInt64(generation) << 8 | purpose.rawValue
        return SecretBytes(count: length, guarded: true) { out in
            master.bytes.withUnsafeBytes { key in
                context.withCString { ctx in
                    let status = crypto_kdf_derive_from_key(
                        out.baseAddress!.assumingMemoryBound(to: UInt8.self),
                        length,
                        id,
                        ctx,
                        key.baseAddress!.assumingMemoryBound(to: UInt8.self)
                    )
                    precondition(status == 0, "crypto_kdf_derive_from_key failed")
                }
            }
        }
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

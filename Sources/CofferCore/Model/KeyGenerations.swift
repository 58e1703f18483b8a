import Foundation

/// One key generation as `KeyStatus` reports it: its state, and what still depends on it. Nothing secret.
public struct KeyGenerationInfo: Sendable, Equatable {
    public enum State: String, Sendable {
        /// New writes use it; its public key is the one clients seal to.
        case active
        /// Superseded: it still decrypts what it encrypts until the re-encryption has moved everything on.
        case decryptOnly = "decrypt-only"
        /// Its keys are no longer derived; nothing depends on it.
        case retired
    }

    /// 1 for the store's first; one more with every rotation.
    public var number: UInt32
    public var keyID: KeyID
    public var state: State
    public var created: Date
    /// When a newer generation became active; nil while it is active.
    public var superseded: Date?
    public var retired: Date?
    /// Values sealed to its public key are taken until then; nil when it is active or the time has passed.
    public var sealedWritesUntil: Date?
    /// Stored fields encrypted under it.
    public var fields: Int
    /// Stored records tagged under it.
    public var records: Int
    /// Unexpired, unrevoked tokens hashed under it, which stop working if it is retired.
    public var liveTokens: Int

    public init(
        number: UInt32,
        keyID: KeyID,
        state: State,
        created: Date,
        superseded: Date? = nil,
        retired: Date? = nil,
        sealedWritesUntil: Date? = nil,
        fields: Int = 0,
        records: Int = 0,
        liveTokens: Int = 0
    ) {
        self.number = number
        self.keyID = keyID
        self.state = state
        self.created = created
        self.superseded = superseded
        self.retired = retired
        self.sealedWritesUntil = sealedWritesUntil
        self.fields = fields
        self.records = records
        self.liveTokens = liveTokens
    }
}

/// How far the re-encryption to the active generation has got.
public struct ReencryptionProgress: Sendable, Equatable {
    /// True when every record is under the active generation.
    public var done: Bool
    /// Records whose tag and fields are all under the active generation.
    public var recordsCurrent: Int
    public var recordsTotal: Int

    public init(done: Bool, recordsCurrent: Int, recordsTotal: Int) {
        self.done = done
        self.recordsCurrent = recordsCurrent
        self.recordsTotal = recordsTotal
    }
}

/// Every key generation of a store, oldest first, and the re-encryption's progress.
public struct KeyStatus: Sendable, Equatable {
    public var generations: [KeyGenerationInfo]
    public var reencryption: ReencryptionProgress

    public init(generations: [KeyGenerationInfo], reencryption: ReencryptionProgress) {
        self.generations = generations
        self.reencryption = reencryption
    }

    /// The generation new writes use.
    public var active: KeyGenerationInfo? { generations.first { $0.state == .active } }
}

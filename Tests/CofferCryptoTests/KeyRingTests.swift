import CofferCore
import CofferTestSupport
import Testing

@testable import CofferCrypto

@Suite struct KeyRingTests {
    /// The master key 00 01 02 … 1f.
    static let fixedMaster = MasterKey(bytes: SecretBytes(copying: Array(0..<32).map(UInt8.init), guarded: true))

    @Test func differentMastersDifferEverywhere() {
        let a = randomKeyRing()
        let b = randomKeyRing()
        #expect(a.keyID != b.keyID)
        #expect(a.publicKey != b.publicKey)
        #expect(!a.matchesKeyCheck(b.keyCheckValue))
        #expect(a.matchesKeyCheck(a.keyCheckValue))
    }

    @Test func sealedValuesOpenOnlyForTheirKey() throws {
        let keys = randomKeyRing()
        let canary = Canary()
        let field = try FieldName("token")
        let sealed = try SealedValue.seal(canary.secret, to: keys.publicKey, keyID: keys.keyID)
        #expect(!canary.occurs(in: sealed.ciphertext))
        #expect(try keys.open(sealed, field: field).copyBytes() == canary.bytes)

        // Sealed to someone else's key, labelled as ours: cannot be opened.
        let other = randomKeyRing()
        let foreign = try SealedValue.seal(canary.secret, to: other.publicKey, keyID: keys.keyID)
        let error = try #require(throws: CofferError.self) { try keys.open(foreign, field: field) }
        #expect(error.code == .invalidArgument)
        #expect(!canary.occurs(in: error.message))

        // Labelled with another key id: told to reseal.
        let mislabelled = SealedValue(keyID: other.keyID, ciphertext: sealed.ciphertext)
        let stale = try #require(throws: CofferError.self) { try keys.open(mislabelled, field: field) }
        #expect(stale.code == .failedPrecondition)

        // Truncated and flipped ciphertexts.
        #expect(throws: CofferError.self) {
            try keys.open(SealedValue(keyID: keys.keyID, ciphertext: Array(sealed.ciphertext.prefix(10))), field: field)
        }
        var flipped = sealed.ciphertext
        flipped[flipped.count - 1] ^= 1
        #expect(throws: CofferError.self) {
            try keys.open(SealedValue(keyID: keys.keyID, ciphertext: flipped), field: field)
        }
    }

    @Test func tokensAreShapedAndHashedWithTheKey() {
        let keys = randomKeyRing()
        let token = TokenMaterial.generate()
        #expect(token.id.rawValue.count == 16)
        #expect(TokenMaterial.id(of: token.token) == token.id)
        #expect(token.token.testText.hasPrefix("cft_\(token.id)_"))
        #expect(keys.tokenDigest(token.token) == keys.tokenDigest(token.token))
        #expect(keys.tokenDigest(token.token) != randomKeyRing().tokenDigest(token.token))
        #expect(TokenMaterial.id(of: SecretBytes(copying: Array("not-a-token".utf8))) == nil)
        #expect(TokenMaterial.generate().id != token.id)
    }
}

@Suite struct AtRestCipherTests {
    let keys = randomKeyRing()

    static let incarnation = [UInt8](repeating: 7, count: KeyRing.incarnationLength)

    func binding(
        _ ref: String = "aws/prod",
        field: String = "secret",
        version: UInt64 = 1,
        incarnation: [UInt8] = incarnation
    ) throws -> FieldBinding {
        FieldBinding(
            connection: try ConnectionRef(parsing: ref),
            field: try FieldName(field),
            recordVersion: version,
            incarnation: incarnation
        )
    }

    @Test func roundTripsAndHidesThePlaintext() throws {
        let canary = Canary()
        let stored = keys.sealAtRest(canary.secret, binding: try binding())
        #expect(!canary.occurs(in: stored))
        #expect(stored[0] == KeyRing.atRestFormat)
        #expect(Array(stored[1..<9]) == keys.keyID.bytes)
        #expect(try keys.openAtRest(stored, binding: try binding()).copyBytes() == canary.bytes)
        // A fresh nonce each time.
        #expect(keys.sealAtRest(canary.secret, binding: try binding()) != stored)
    }

    @Test(arguments: [
        ("aws/other", "secret", UInt64(1), UInt8(7)), ("aws/prod", "other", 1, 7), ("aws/prod", "secret", 2, 7),
        ("awsx/prod", "secret", 1, 7), ("aws/prod", "secret", 1, 8),
    ])
    func refusesAnotherPlace(ref: String, field: String, version: UInt64, incarnation: UInt8) throws {
        let canary = Canary()
        let stored = keys.sealAtRest(canary.secret, binding: try binding())
        let other = [UInt8](repeating: incarnation, count: KeyRing.incarnationLength)
        let error = try #require(throws: CofferError.self) {
            try keys.openAtRest(stored, binding: try binding(ref, field: field, version: version, incarnation: other))
        }
        #expect(error.code == .dataLoss)
        #expect(!canary.occurs(in: error.message))
    }

    @Test func refusesEveryFlippedBit() throws {
        let stored = keys.sealAtRest(SecretBytes(copying: Array("short".utf8)), binding: try binding())
        for index in stored.indices {
            for bit in 0..<8 {
                var altered = stored
                altered[index] ^= UInt8(1 << bit)
                #expect(throws: CofferError.self) { try keys.openAtRest(altered, binding: try binding()) }
            }
        }
    }

    @Test func aKeyIDThisStoreNeverHadIsDataLoss() throws {
        let stored = keys.sealAtRest(SecretBytes(copying: [1, 2, 3]), binding: try binding())
        let error = try #require(throws: CofferError.self) {
            try randomKeyRing().openAtRest(stored, binding: try binding())
        }
        #expect(error.code == .dataLoss)
        var flipped = stored
        flipped[3] ^= 0x40
        #expect((try? keys.openAtRest(flipped, binding: try binding())) == nil)
        let damaged = try #require(throws: CofferError.self) { try keys.openAtRest(flipped, binding: try binding()) }
        #expect(damaged.code == .dataLoss)
    }

    @Test func refusesTruncation() throws {
        let stored = keys.sealAtRest(SecretBytes(copying: [1, 2, 3]), binding: try binding())
        for length in [0, 1, 9, 33, stored.count - 1] {
            #expect(throws: CofferError.self) {
                try keys.openAtRest(Array(stored.prefix(length)), binding: try binding())
            }
        }
    }
}

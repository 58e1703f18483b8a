import CofferCore
import Foundation
import Testing

@testable import CofferCrypto

/// Known answers, computed independently of Coffer's code (Vectors/make_vectors.py): if the key derivation or
/// the at-rest format ever changes, every existing store becomes unreadable, so a change must fail here first.
@Suite struct KnownAnswerTests {
    struct Vectors: Decodable {
        var master_key: String
        var public_key: String
        var key_id: String
        var key_check: String
        var token: String
        var token_digest: String
        var at_rest: AtRest

        struct AtRest: Decodable {
            var connection: String
            var field: String
            var record_version: UInt64
            var nonce: String
            var plaintext: String
            var additional_data: String
            var stored: String
        }
    }

    static let vectors: Vectors = {
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent(
            "Vectors/vectors.json"
        )
        return try! JSONDecoder().decode(Vectors.self, from: Data(contentsOf: path))
    }()

    var keys: KeyRing {
        KeyRing(master: MasterKey(bytes: SecretBytes(copying: Hex.decode(Self.vectors.master_key)!, guarded: true)))
    }

    var binding: FieldBinding {
        get throws {
            FieldBinding(
                connection: try ConnectionRef(parsing: Self.vectors.at_rest.connection),
                field: try FieldName(Self.vectors.at_rest.field),
                recordVersion: Self.vectors.at_rest.record_version
            )
        }
    }

    @Test func keyDerivation() {
        let keys = self.keys
        #expect(Hex.encode(keys.publicKey) == Self.vectors.public_key)
        #expect(keys.keyID.hex == Self.vectors.key_id)
        #expect(Hex.encode(keys.keyCheckValue) == Self.vectors.key_check)
        #expect(Hex.encode(keys.tokenDigest(SecretBytes(utf8: Self.vectors.token))) == Self.vectors.token_digest)
    }

    @Test func atRestAdditionalData() throws {
        let ad = KeyRing.additionalData(format: KeyRing.atRestFormat, keyID: keys.keyID, binding: try binding)
        #expect(Hex.encode(ad) == Self.vectors.at_rest.additional_data)
    }

    @Test func atRestSealing() throws {
        let vector = Self.vectors.at_rest
        let sealed = keys.sealAtRest(
            SecretBytes(copying: Hex.decode(vector.plaintext)!),
            binding: try binding,
            nonce: Hex.decode(vector.nonce)!
        )
        #expect(Hex.encode(sealed) == vector.stored)
    }

    @Test func atRestOpening() throws {
        let vector = Self.vectors.at_rest
        let opened = try keys.openAtRest(Hex.decode(vector.stored)!, binding: try binding)
        #expect(Hex.encode(opened.copyBytes()) == vector.plaintext)
    }
}

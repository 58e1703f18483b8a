import CofferCore
import Foundation
import Testing

@testable import CofferCrypto

/// Known answers, computed independently of Coffer's code (Vectors/make_vectors.py): if the key derivation, the
/// at-rest format or the store's authentication ever changes, every existing store becomes unreadable, so a
/// change must fail here first.
@Suite struct KnownAnswerTests {
    struct Vectors: Decodable {
        var master_key: String
        var public_key: String
        var key_id: String
        var key_check: String
        var token: String
        var token_digest: String
        var generation_2: Generation
        var at_rest_format_1: AtRest
        var at_rest: AtRest
        var record: Record
        var audit: Audit

        struct Generation: Decodable {
            var number: UInt32
            var public_key: String
            var key_id: String
        }

        struct AtRest: Decodable {
            var connection: String
            var field: String
            var record_version: UInt64
            var incarnation: String?
            var nonce: String
            var plaintext: String
            var additional_data: String
            var stored: String
        }

        struct Record: Decodable {
            var table: String
            var key: String
            var payload: String
            var generation: UInt32
            var tag: String
            var summary_element: String
            var metadata_tag: String
        }

        struct Audit: Decodable {
            var sequence: UInt64
            var entry: String
            var link: String
            var journal_tag: String
        }
    }

    static let vectors: Vectors = {
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent(
            "Vectors/vectors.json"
        )
        return try! JSONDecoder().decode(Vectors.self, from: Data(contentsOf: path))
    }()

    var master: MasterKey {
        MasterKey(bytes: SecretBytes(copying: Hex.decode(Self.vectors.master_key)!, guarded: true))
    }
    var keys: KeyRing { KeyRing(master: master) }

    func binding(_ vector: Vectors.AtRest) throws -> FieldBinding {
        FieldBinding(
            connection: try ConnectionRef(parsing: vector.connection),
            field: try FieldName(vector.field),
            recordVersion: vector.record_version,
            incarnation: vector.incarnation.map { Hex.decode($0)! }
        )
    }

    @Test func keyDerivation() {
        let keys = self.keys
        #expect(Hex.encode(keys.publicKey) == Self.vectors.public_key)
        #expect(keys.keyID.hex == Self.vectors.key_id)
        #expect(Hex.encode(keys.keyCheckValue) == Self.vectors.key_check)
        #expect(Hex.encode(keys.tokenDigest(SecretBytes(utf8: Self.vectors.token))) == Self.vectors.token_digest)
    }

    @Test func laterGenerationsDeriveKeysOfTheirOwn() throws {
        let vector = Self.vectors.generation_2
        let ring = KeyRing(master: master, generations: [1, vector.number], active: vector.number)
        #expect(Hex.encode(ring.active.publicKey) == vector.public_key)
        #expect(ring.active.keyID.hex == vector.key_id)
        // The keys that stay for the store's life do not change with the active generation.
        #expect(Hex.encode(ring.keyCheckValue) == Self.vectors.key_check)
    }

    /// The at-rest vectors by format: 1 (read only to migrate) and 2.
    static func atRest(_ format: Int) -> Vectors.AtRest { format == 1 ? vectors.at_rest_format_1 : vectors.at_rest }

    @Test(arguments: [1, 2])
    func atRestAdditionalData(format: Int) throws {
        let vector = Self.atRest(format)
        let ad = KeyRing.additionalData(format: UInt8(format), keyID: keys.keyID, binding: try binding(vector))
        #expect(Hex.encode(ad) == vector.additional_data)
    }

    @Test func atRestSealing() throws {
        let vector = Self.vectors.at_rest
        let sealed = keys.sealAtRest(
            SecretBytes(copying: Hex.decode(vector.plaintext)!),
            binding: try binding(vector),
            nonce: Hex.decode(vector.nonce)!
        )
        #expect(Hex.encode(sealed) == vector.stored)
    }

    @Test(arguments: [1, 2])
    func atRestOpening(format: Int) throws {
        let vector = Self.atRest(format)
        let opened = try keys.openAtRest(Hex.decode(vector.stored)!, binding: try binding(vector))
        #expect(Hex.encode(opened.copyBytes()) == vector.plaintext)
    }

    @Test func recordAuthentication() {
        let vector = Self.vectors.record
        let keys = self.keys
        let tag = keys.recordTag(
            table: vector.table,
            key: Hex.decode(vector.key)!,
            payload: Hex.decode(vector.payload)![...],
            generation: keys.generations[vector.generation]!
        )
        #expect(Hex.encode(tag) == vector.tag)
        #expect(
            Hex.encode(keys.summaryElement(table: vector.table, key: Hex.decode(vector.key)!, tag: tag))
                == vector.summary_element
        )
        #expect(Hex.encode(keys.metadataTag(Hex.decode(vector.payload)![...])) == vector.metadata_tag)
    }

    @Test func auditChain() {
        let vector = Self.vectors.audit
        let entry = Hex.decode(vector.entry)!
        #expect(
            Hex.encode(keys.auditLink(previous: KeyRing.firstAuditLink, sequence: vector.sequence, entry: entry[...]))
                == vector.link
        )
        #expect(Hex.encode(keys.journalTag(entry[...])) == vector.journal_tag)
    }
}

import CofferCore
import CofferCrypto
import CofferTestSupport
import Foundation
import Testing

@testable import CofferStore

/// Typed connections in the store: public fields kept in clear and bound into every secret value, kept across
/// an update that replaces nothing secret, and refused when edited behind cofferd's back.
@Suite struct TypedConnectionTests {
    static let ref = "http/api"
    static let shape = ConnectionShape(
        typeVersion: 1,
        variant: "token",
        publicFields: [try! FieldName("baseURL"): "https://api.example.com", try! FieldName("header.Accept"): "json"]
    )

    func typed() throws -> StoreFixture {
        let f = try StoreFixture()
        try f.store.write { writer in
            try writer.put(
                try ConnectionRef(parsing: Self.ref),
                OpenedFields([try FieldName("token"): SecretBytes(utf8: "VALUE-MARK-token")]),
                shape: Self.shape
            )
        }
        try f.grant("w", Self.ref)
        return f
    }

    @Test func publicFieldsAreKeptInClearAndServedBesideTheSecrets() throws {
        let f = try typed()
        let info = try f.store.info(try ConnectionRef(parsing: Self.ref))
        #expect(info.shape == Self.shape)
        #expect(info.fields.map(\.rawValue) == ["baseURL", "header.Accept", "token"])
        #expect(info.secretFields.map(\.rawValue) == ["token"])
        let values = try f.store.get(try ConnectionRef(parsing: Self.ref), for: try WorkflowName("w"))
        #expect(values.shape == Self.shape)
        #expect(values.fields[try FieldName("token")]?.testText == "VALUE-MARK-token")
        #expect(!f.diskBytes().contains(bytes: Array("VALUE-MARK-token".utf8)))
        #expect(f.diskBytes().contains(bytes: Array("https://api.example.com".utf8)))
        try f.reopen()
        #expect(try f.store.verificationProblems().isEmpty)
    }

    @Test func anUpdateKeepsTheSecretsItDoesNotName() throws {
        let f = try typed()
        let ref = try ConnectionRef(parsing: Self.ref)
        let info = try f.store.write { writer in
            try writer.update(ref, expectedVersion: 1) { current in
                var shape = current.shape
                shape.publicFields[try FieldName("baseURL")] = "https://api2.example.com"
                return (OpenedFields(current.fields), shape)
            }
        }
        #expect(info.version == 2)
        let values = try f.store.get(ref, for: try WorkflowName("w"))
        #expect(values.shape.publicFields[try FieldName("baseURL")] == "https://api2.example.com")
        #expect(values.fields[try FieldName("token")]?.testText == "VALUE-MARK-token")
        let stale = cofferError {
            _ = try f.store.write { try $0.update(ref, expectedVersion: 1) { (OpenedFields($0.fields), $0.shape) } }
        }
        #expect(stale?.code == .failedPrecondition)
    }

    @Test func aPublicFieldEditedInStorageIsDataLoss() throws {
        let f = try typed()
        var record = try f.rawRecord(Self.ref)
        record.publicFields[0].value = "https://attacker.example.com"
        // Each secret value is bound to the public fields: even a record whose own tag were right fails.
        let error = cofferError {
            _ = try ConnectionTable.open(try ConnectionRef(parsing: Self.ref), record, keys: f.keys)
        }
        #expect(error?.code == .dataLoss && error?.message.contains("field token") == true)
        var untyped = try f.rawRecord(Self.ref)
        untyped.typeVersion = 0
        #expect(
            cofferError { _ = try ConnectionTable.open(try ConnectionRef(parsing: Self.ref), untyped, keys: f.keys) }?
                .code == .dataLoss
        )

        // Edited in the file: the open store refuses to serve it, and a restart refuses the store.
        try f.replaceRawRecord(Self.ref, record)
        let served = cofferError {
            _ = try f.store.get(try ConnectionRef(parsing: Self.ref), for: try WorkflowName("w"))
        }
        #expect(served?.code == .dataLoss)
        let reopened = cofferError { try f.reopen() }
        #expect(reopened?.code == .dataLoss)
    }
}

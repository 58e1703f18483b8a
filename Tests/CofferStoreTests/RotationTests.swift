import CofferCore
import CofferCrypto
import CofferTestSupport
import Foundation
import Testing

@testable import CofferStore

/// Key generations: rotation, the grace period for sealed writes, the re-encryption and its cursor, and
/// retirement only when nothing depends on a generation.
@Suite struct RotationTests {
    /// A store with `count` connections of two fields each, all granted to workflow "w".
    func populated(_ count: Int) throws -> StoreFixture {
        let f = try StoreFixture()
        for n in 0..<count {
            try f.put("aws/c\(n)", ["key": "key-\(n)", "secret": "secret-\(n)"])
            try f.grant("w", "aws/c\(n)")
        }
        return f
    }

    func expectAllValues(_ f: StoreFixture, _ count: Int, _ comment: Comment? = nil) throws {
        for n in 0..<count {
            #expect(try f.values("aws/c\(n)", as: "w") == ["key": "key-\(n)", "secret": "secret-\(n)"], comment)
        }
    }

    func generation(_ status: KeyStatus, _ number: UInt32) throws -> KeyGenerationInfo {
        try #require(status.generations.first { $0.number == number })
    }

    @Test func aRotationChangesThePublicKeyAtOnceAndKeepsEveryValue() throws {
        let f = try populated(10)
        let before = f.keys.keyID
        let info = try f.store.rotateKey()
        #expect(info.number == 2 && info.state == .active)
        #expect(f.keys.keyID == info.keyID && info.keyID != before)
        #expect(f.keys.active.number == 2)
        try expectAllValues(f, 10)

        var status = try f.store.keyStatus()
        #expect(try generation(status, 1).state == .decryptOnly)
        #expect(try generation(status, 1).fields == 20)
        #expect(try generation(status, 2).fields == 0)
        #expect(!status.reencryption.done)
        // 10 connections, 10 grants, and the change feed's 20 records of them.
        #expect(status.reencryption.recordsTotal == 40)

        #expect(try f.store.reencryptAll(batch: 3) == 20)
        status = try f.store.keyStatus()
        #expect(try generation(status, 1).fields == 0 && (try generation(status, 1).records) == 0)
        #expect(try generation(status, 2).fields == 20 && (try generation(status, 2).records) == 40)
        #expect(status.reencryption.done && status.reencryption.recordsCurrent == 40)
        try expectAllValues(f, 10)
        try f.reopen()
        try expectAllValues(f, 10)
    }

    @Test func valuesSealedToTheOldKeyAreTakenOnlyDuringTheGracePeriod() throws {
        let f = try populated(1)
        let oldSealed = try f.keys.sealFields(["key": "sealed-to-1"])
        try f.store.rotateKey()
        try f.store.overwrite(try ConnectionRef(parsing: "aws/c0"), fields: oldSealed)
        #expect(try f.values("aws/c0", as: "w") == ["key": "sealed-to-1"])
        f.advance(StoreConfiguration.defaultSealedKeyGrace.timeInterval + 1)
        let error = cofferError {
            try f.store.overwrite(try ConnectionRef(parsing: "aws/c0"), fields: oldSealed)
        }
        #expect(error?.code == .failedPrecondition)
        #expect(error?.message.contains("fetch the public key again") == true)
        // Sealed to the new key: taken.
        try f.store.overwrite(try ConnectionRef(parsing: "aws/c0"), fields: try f.keys.sealFields(["key": "new"]))
        #expect(try f.values("aws/c0", as: "w") == ["key": "new"])
    }

    @Test func theReencryptionResumesFromItsCursorAfterAReopen() throws {
        let f = try populated(30)
        try f.store.rotateKey()
        var steps = 0
        while f.store.reencryptionPending {
            _ = try f.store.write { try $0.reencrypt(limit: 7) }
            steps += 1
            // Reopening from the files alone is what a crash after this commit leaves.
            try f.reopen()
            try expectAllValues(f, 30, "after \(steps) batches")
        }
        #expect(steps >= 60 / 7)
        let status = try f.store.keyStatus()
        #expect(try generation(status, 1).fields == 0)
        #expect(status.reencryption.recordsCurrent == status.reencryption.recordsTotal)
    }

    @Test func aGenerationIsRetiredOnlyWhenNothingDependsOnIt() throws {
        let f = try populated(3)
        let old = try f.store.issueToken(for: try WorkflowName("w"), ttl: .seconds(3 * 86_400))
        let firstKeyID = f.keys.keyID
        try f.store.rotateKey()
        var error = cofferError { try f.store.retireKey(2) }
        #expect(error?.code == .failedPrecondition && error?.message.contains("active") == true)
        error = cofferError { try f.store.retireKey(1) }
        #expect(error?.code == .failedPrecondition && error?.message.contains("taken until") == true)
        error = cofferError { try f.store.retireKey(9) }
        #expect(error?.code == .notFound)

        f.advance(StoreConfiguration.defaultSealedKeyGrace.timeInterval + 1)
        error = cofferError { try f.store.retireKey(1) }
        #expect(error?.code == .failedPrecondition && error?.message.contains("6 stored fields") == true)

        try f.store.reencryptAll()
        // The token hashed under generation 1 still works, and holds the generation.
        #expect(try f.store.verifyToken(old.token).workflow.rawValue == "w")
        error = cofferError { try f.store.retireKey(1) }
        #expect(error?.code == .failedPrecondition && error?.message.contains("1 live tokens") == true)
        #expect(try generation(try f.store.keyStatus(), 1).liveTokens == 1)

        try f.store.revokeToken(id: old.info.id)
        let retired = try f.store.retireKey(1)
        #expect(retired.state == .retired)
        #expect(f.keys.generations[1] == nil)
        error = cofferError { try f.store.retireKey(1) }
        #expect(error?.code == .failedPrecondition && error?.message.contains("already") == true)

        try expectAllValues(f, 3)
        let fresh = try f.store.issueToken(for: try WorkflowName("w"), ttl: .seconds(60))
        #expect(try f.store.verifyToken(fresh.token).workflow.rawValue == "w")
        try f.reopen()
        try expectAllValues(f, 3)
        let status = try f.store.keyStatus()
        #expect(try generation(status, 1).state == .retired)
        #expect(try generation(status, 1).keyID == firstKeyID)
        #expect(try f.store.verificationProblems().isEmpty)
    }

    @Test func rotatingAgainBeforeTheReencryptionEndsMovesEverythingToTheNewest() throws {
        let f = try populated(12)
        try f.store.rotateKey()
        _ = try f.store.write { try $0.reencrypt(limit: 5) }
        try f.store.rotateKey()
        try f.put("aws/late", ["key": "late"])
        try f.grant("w", "aws/late")
        try f.store.reencryptAll(batch: 4)
        let status = try f.store.keyStatus()
        #expect(try generation(status, 3).state == .active)
        #expect(try generation(status, 3).fields == 12 * 2 + 1)
        #expect(try generation(status, 1).fields == 0 && (try generation(status, 2).fields) == 0)
        #expect(status.reencryption.recordsCurrent == status.reencryption.recordsTotal)
        try expectAllValues(f, 12)
        #expect(try f.values("aws/late", as: "w") == ["key": "late"])
        f.advance(StoreConfiguration.defaultSealedKeyGrace.timeInterval + 1)
        try f.store.retireKey(1)
        try f.store.retireKey(2)
        try f.reopen()
        try expectAllValues(f, 12)
    }

    @Test func aRecordPutBackUnderARetiredGenerationIsDataLoss() throws {
        let f = try populated(2)
        let before = try f.store.env.read { try $0.get(f.store.tables.connections.db, Array("aws/c0".utf8))! }
        try f.store.rotateKey()
        try f.store.reencryptAll()
        f.advance(StoreConfiguration.defaultSealedKeyGrace.timeInterval + 1)
        try f.store.retireKey(1)
        try f.store.env.write { try $0.put(f.store.tables.connections.db, Array("aws/c0".utf8), before) }
        let error = cofferError { _ = try f.values("aws/c0", as: "w") }
        #expect(error?.code == .dataLoss)
        f.store.close()
        let reopened = cofferError { f.store = try f.dataDirectory.open(configuration: f.configuration()) }
        #expect(reopened?.code == .dataLoss)
        #expect(reopened?.message.contains("aws/c0") == true)
    }
}

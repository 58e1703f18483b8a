import CofferCore
import CofferCrypto
import CofferTestSupport
import Foundation
import Testing

@testable import CofferStore

/// The change feed: each committed change gets the next store-wide revision in its own transaction, gapless
/// even when a change of a batch fails; the oldest are dropped past the limit; a store made before the feed
/// opens and verifies, and gains it with its first change.
@Suite struct ChangeFeedTests {
    func changes(_ f: StoreFixture, after revision: UInt64 = 0) throws -> [ChangeEvent]? {
        try f.store.read { try $0.changes(after: revision, limit: 1000) }
    }

    @Test func everyKindOfChangeIsRecordedInOrderUnderTheNextRevision() throws {
        let f = try StoreFixture()
        try f.put("aws/prod", ["k": "v1"])
        try f.grant("deploy", "aws/prod")
        try f.grant("deploy", "aws/prod")  // already there: no change
        try f.store.overwrite(try ConnectionRef(parsing: "aws/prod"), fields: try f.keys.sealFields(["k": "v2"]))
        let token = try f.store.issueToken(for: try WorkflowName("deploy"), ttl: .seconds(60))
        _ = try f.store.revokeToken(id: token.info.id)
        _ = try f.store.revokeToken(id: token.info.id)  // revoked already: no change
        try f.store.revoke(try WorkflowName("deploy"), try ConnectionRef(parsing: "aws/prod"))
        try f.store.delete(try ConnectionRef(parsing: "aws/prod"))

        let events = try #require(try changes(f))
        #expect(events.map(\.revision) == Array(1...7))
        #expect(
            events.map(\.kind) == [
                .connectionCreated, .grantAdded, .connectionChanged, .tokenIssued, .tokenRevoked, .grantRevoked,
                .connectionDeleted,
            ]
        )
        #expect(events.map(\.version) == [1, 0, 2, 0, 0, 0, 2])
        #expect(events[3].tokenID == token.info.id && events[3].workflow?.rawValue == "deploy")
        #expect(events[1].connection?.description == "aws/prod" && events[1].workflow?.rawValue == "deploy")
        #expect(try f.store.read { try $0.changeRange() } == (1, 7))
        #expect(try changes(f, after: 5)?.map(\.revision) == [6, 7])
        #expect(try changes(f, after: 7) == [])
        try f.reopen()
        #expect(try changes(f)?.count == 7)
        #expect(try f.store.verificationProblems().isEmpty)
    }

    @Test func aChangeUndoneInABatchLeavesNoGap() throws {
        let f = try StoreFixture()
        let sealed = try f.keys.sealFields(["k": "v"])
        try f.store.write { writer in
            try writer.nested {
                try $0.put(try ConnectionRef(parsing: "aws/a"), try f.store.open(SealedFields(sealed)))
            }
            _ = try? writer.nested { nested in
                try nested.put(try ConnectionRef(parsing: "aws/b"), try f.store.open(SealedFields(sealed)))
                throw CofferError(.failedPrecondition, "undone")
            }
            try writer.nested {
                try $0.put(try ConnectionRef(parsing: "aws/c"), try f.store.open(SealedFields(sealed)))
            }
        }
        let events = try #require(try changes(f))
        #expect(events.map(\.revision) == [1, 2])
        #expect(events.map { $0.connection?.description } == ["aws/a", "aws/c"])
    }

    @Test func theOldestChangesAreDroppedAndAFollowerTooFarBehindIsToldToStartOver() throws {
        var limits = StoreLimits()
        limits.maxChangeRecords = 5
        let f = try StoreFixture(limits: limits)
        for n in 0..<8 { try f.put("aws/c\(n)", ["k": "v"]) }
        #expect(try f.store.read { try $0.changeRange() } == (4, 8))
        #expect(try changes(f, after: 2) == nil)
        #expect(try changes(f, after: 3)?.map(\.revision) == [4, 5, 6, 7, 8])
        try f.reopen()
        #expect(try f.store.verificationProblems().isEmpty)
    }

    @Test func aStoreMadeBeforeTheFeedVerifiesAndGainsItWithItsFirstChange() throws {
        let (dir, directory, _) = try UntypedStoreTests.copy()
        var store = try directory.open()
        #expect(try store.read { try $0.changeRange() } == (1, 0))
        #expect(try store.verificationProblems().isEmpty)
        try store.grant(try WorkflowName("etl"), try ConnectionRef(parsing: "basic/db"))
        store.close()
        store = try directory.open()
        defer { store.close() }
        #expect(try store.read { try $0.changes(after: 0, limit: 10) }?.map(\.kind) == [.grantAdded])
        #expect(try store.verificationProblems().isEmpty)
        withExtendedLifetime(dir) {}
    }
}

import CofferCore
import CofferCrypto
import CofferReplication
import CofferStore
import CofferTestSupport
import Foundation
import Synchronization
import Testing

/// Nodes of one cluster in this process, on an in-process log that can stall, lose its newest batches or have
/// one replaced: what each node serves and takes under sustained writes and under each fault.
@Suite(.serialized) struct ReplicationServiceTests {
    let key: ClusterKey
    let log = InProcessLog()

    init() throws { key = try ClusterKey() }

    func node(
        writeDeadline: Duration = .seconds(2),
        maxLag: Duration = .seconds(1),
        following: Bool = true
    ) throws -> ClusterNode {
        let node = try ClusterNode(key: key, log: log, writeDeadline: writeDeadline, maxLag: maxLag)
        if following { node.follow() }
        return node
    }

    @Test func followersUnderSustainedWritesFromTwoNodesNeverTakeTheirLagForARollback() async throws {
        // Deadlines long enough for a machine busy with the other tests: this is about what the followers judge.
        let a = try node(writeDeadline: .seconds(30))
        let b = try node(writeDeadline: .seconds(30))
        let c = try node(writeDeadline: .seconds(30))
        #expect(try await a.put("generic/a", "0").get() > 0)
        #expect(try await b.put("generic/b", "0").get() > 0)
        // Every failure a follower reports is a false alarm here: nothing is wrong with the log.
        let failures = Mutex<[String]>([])
        let watching = Task {
            while !Task.isCancelled {
                for node in [a, b, c] {
                    if let failure = node.status.snapshot.failure { failures.withLock { $0.append(failure) } }
                }
                try? await Task.sleep(for: .milliseconds(1))
            }
        }
        async let fromA: Int = (1...400).asyncCount { await a.overwrite("generic/a", "\($0)") }
        async let fromB: Int = (1...400).asyncCount { await b.overwrite("generic/b", "\($0)") }
        let (acknowledgedA, acknowledgedB) = await (fromA, fromB)
        #expect(acknowledgedA == 400)
        #expect(acknowledgedB == 400)
        let head = await log.revision
        #expect(await eventually { [a, b, c].allSatisfy { $0.revision == head } })
        watching.cancel()
        #expect(failures.withLock { $0 } == [])
        for node in [a, b, c] { #expect(node.status.state(now: Date()) == .current) }
    }

    @Test func aStalledDatabaseAnswersWritesUnavailableWithinTheDeadlineAndKeepsValuesServed() async throws {
        let a = try node(writeDeadline: .milliseconds(300))
        let b = try node()
        try await a.put("generic/db", "before").get()
        try await a.grant("deploy", "generic/db").get()
        let token = try await a.issueToken("deploy").get().token
        #expect(await eventually { b.revision == a.revision })
        await log.stall()
        let before = a.revision
        let write = await a.overwrite("generic/db", "during")
        #expect(write.failureCode == .unavailable)
        #expect(a.revision == before)
        // Known to be out of reach: the next write fails at once, and Health says so on both nodes.
        #expect(await a.overwrite("generic/db", "during").failureCode == .unavailable)
        #expect(await eventually { if case .unreachable = b.status.state(now: Date()) { true } else { false } })
        #expect(try b.value("generic/db", token: token) == "before")
        #expect(try a.value("generic/db", token: token) == "before")
        await log.resume()
        #expect(await eventually { a.status.state(now: Date()) == .current })
        #expect(try await a.overwrite("generic/db", "after").get() > before)
        #expect(await eventually { (try? b.value("generic/db", token: token)) == "after" })
    }

    @Test func aRolledBackLogFailsTheNodesThatSawMoreUntilItIsMended() async throws {
        let a = try node()
        let b = try node()
        try await a.put("generic/db", "one").get()
        try await a.grant("deploy", "generic/db").get()
        let token = try await a.issueToken("deploy").get().token
        try await a.overwrite("generic/db", "two").get()
        #expect(await eventually { b.revision == a.revision })
        let removed = await log.rollBack(1)
        #expect(await eventually { b.status.snapshot.failure != nil && a.status.snapshot.failure != nil })
        for node in [a, b] {
            #expect(throws: CofferError.self) { try node.value("generic/db", token: token) }
            #expect(await node.overwrite("generic/db", "three").failureCode == .unavailable)
        }
        #expect(await log.revision == a.revision - 1)
        await log.restore(removed)
        #expect(await eventually { a.status.snapshot.failure == nil && b.status.snapshot.failure == nil })
        #expect(try b.value("generic/db", token: token) == "two")
        #expect(try await b.overwrite("generic/db", "three").get() > 0)
    }

    @Test func aLogRewrittenByANodeThatNeverSawTheNewestBatchFailsTheNodesThatDid() async throws {
        let a = try node()
        let b = try node()
        let c = try node()
        try await a.put("generic/db", "one").get()
        try await a.grant("deploy", "generic/db").get()
        let token = try await a.issueToken("deploy").get().token
        #expect(await eventually { c.revision == a.revision && b.revision == a.revision })
        await c.stopFollowing()
        let version = try await a.overwrite("generic/db", "two").get()
        #expect(await eventually { b.revision == version })
        // The newest row removed by hand; a node that never saw it writes the same revision with another value.
        await log.rollBack(1)
        c.follow()
        #expect(try await c.overwrite("generic/db", "other").get() == version)
        #expect(await eventually { a.status.snapshot.failure != nil && b.status.snapshot.failure != nil })
        for node in [a, b] {
            #expect(throws: CofferError.self) { try node.value("generic/db", token: token) }
            #expect(await node.overwrite("generic/db", "three").failureCode == .unavailable)
            #expect(node.revision == version)
        }
        #expect(try c.value("generic/db", token: token) == "other")
    }

    @Test func aRequestAnsweredFromAStaleNodesStateWaitsForTheLogToConfirmIt() async throws {
        let a = try node()
        let b = try node()
        try await a.put("generic/db", "one").get()
        try await a.grant("deploy", "generic/db").get()
        #expect(await eventually { b.revision == a.revision })
        // b stops following; a takes the grant away; b still holds it.
        await b.stopFollowing()
        let revoked = try await a.revoke("deploy", "generic/db").get()
        #expect(b.revision < revoked)
        // On b, granting again is no change by b's own state: it is answered only once the log says b is current,
        // so b catches up first and the grant is made again, for every node.
        let granted = try await b.requestGrant("deploy", "generic/db").get()
        #expect(granted > revoked)
        b.follow()
        #expect(await eventually { a.revision == granted })
        // A failed node answers no request, even one that would change nothing (its follower stopped, so that no
        // read of the whole log mends it meanwhile).
        await b.stopFollowing()
        b.status.fail("a test")
        #expect(await b.requestGrant("deploy", "generic/db").failureCode == .unavailable)
    }

    @Test func aRevokedTokenIsRefusedOnEveryOtherNodeOnceItHasCaughtUp() async throws {
        let a = try node()
        let b = try node(maxLag: .milliseconds(200))
        try await a.put("generic/db", "one").get()
        try await a.grant("deploy", "generic/db").get()
        let issued = try await a.issueToken("deploy").get()
        #expect(await eventually { (try? b.value("generic/db", token: issued.token)) == "one" })
        // B stops applying but hears of the revocation: it refuses values once it has known for max-lag.
        await b.stopFollowing()
        let revoked = try await a.revokeToken(issued.info.id).get()
        b.status.notified(revision: revoked, at: Date())
        #expect(await eventually { (try? b.value("generic/db", token: issued.token)) == nil })
        b.follow()
        #expect(await eventually { b.revision == revoked })
        #expect(throws: CofferError.self) { try b.value("generic/db", token: issued.token) }
    }
}

extension Result where Failure == CofferError {
    var failureCode: StatusCode? {
        if case .failure(let error) = self { return error.code }
        return nil
    }
}

extension ClosedRange where Bound == Int {
    /// Runs `body` for each number in order; how many succeeded.
    func asyncCount<T>(_ body: (Int) async -> Result<T, CofferError>) async -> Int {
        var count = 0
        for index in self {
            if case .success = await body(index) { count += 1 }
        }
        return count
    }
}

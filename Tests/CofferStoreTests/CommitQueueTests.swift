import CofferCore
import CofferCrypto
import CofferTestSupport
import Foundation
import Synchronization
import Testing

@testable import CofferStore

/// Collects a job's outcome from the writer's thread.
final class Outcomes: Sendable {
    private let results = Mutex<[Int: Result<Void, CofferError>]>([:])
    private let done = DispatchSemaphore(value: 0)

    func record(_ index: Int, _ result: Result<Void, CofferError>) {
        results.withLock { $0[index] = result }
        done.signal()
    }

    func wait(for count: Int) -> [Int: Result<Void, CofferError>] {
        for _ in 0..<count { done.wait() }
        return results.withLock { $0 }
    }
}

@Suite struct CommitQueueTests {
    func queue(_ f: StoreFixture) throws -> CommitQueue {
        let (journal, _) = try AuditJournal.open(store: f.store)
        let queue = CommitQueue(store: f.store, journal: journal)
        queue.start()
        return queue
    }

    func putJob(
        _ f: StoreFixture,
        _ name: String,
        _ value: String,
        index: Int,
        outcomes: Outcomes,
        usesReserve: Bool = false
    ) throws -> CommitQueue.Job {
        let ref = try ConnectionRef(parsing: name)
        let opened = try f.store.open(SealedFields(try f.keys.sealFields(["v": value])))
        let event = AuditEvent(
            time: f.clock.now,
            socket: .admin,
            action: .operation(.put),
            peerUID: 0,
            peerPID: Int32(index)
        )
        return CommitQueue.Job(
            usesReserve: usesReserve,
            apply: { writer in
                _ = try writer.put(ref, opened)
                return event
            },
            failureRecord: { error in
                var failed = event
                failed.outcome = error.code
                return failed
            },
            completion: { outcomes.record(index, $0) }
        )
    }

    @Test func jobsShareACommitAndFailAloneWithTheirRecords() throws {
        let f = try StoreFixture()
        let queue = try queue(f)
        defer { queue.stop() }
        let outcomes = Outcomes()
        try queue.submit([
            putJob(f, "aws/a", "1", index: 0, outcomes: outcomes),
            putJob(f, "aws/a", "2", index: 1, outcomes: outcomes),
            putJob(f, "aws/b", "3", index: 2, outcomes: outcomes),
        ])
        let results = outcomes.wait(for: 3)
        #expect((try? results[0]?.get()) != nil)
        #expect(results[1].map { if case .failure(let e) = $0 { e.code == .alreadyExists } else { false } } == true)
        #expect((try? results[2]?.get()) != nil)
        try f.grant("w", "aws/a")
        #expect(try f.values("aws/a", as: "w") == ["v": "1"])
        #expect(try f.store.auditRecords().map(\.outcome) == [.ok, .alreadyExists, .ok])
    }

    @Test func afterStopJobsAreRefusedAtOnce() throws {
        let f = try StoreFixture()
        let queue = try queue(f)
        queue.stop()
        let outcomes = Outcomes()
        queue.submit([try putJob(f, "aws/a", "1", index: 0, outcomes: outcomes)])
        let result = outcomes.wait(for: 1)[0]
        #expect(result.map { if case .failure(let e) = $0 { e.code == .unavailable } else { false } } == true)
    }

    @Test func aFullMapRefusesWritesButLetsADeleteUseTheReserve() throws {
        let f = try StoreFixture(mapSize: 1 << 20)
        let queue = try queue(f)
        defer { queue.stop() }
        let big = String(repeating: "x", count: 60_000)
        var full: CofferError?
        for index in 0..<64 where full == nil {
            let outcomes = Outcomes()
            queue.submit([try putJob(f, "http/n\(index)", big, index: 0, outcomes: outcomes)])
            if case .failure(let error)? = outcomes.wait(for: 1)[0] { full = error }
        }
        #expect(full?.code == .resourceExhausted)
        #expect(full?.message.contains("--map-size") == true)
        // A delete on the full map succeeds, using the reserve.
        let outcomes = Outcomes()
        let ref = try ConnectionRef(parsing: "http/n0")
        queue.submit([
            CommitQueue.Job(
                usesReserve: true,
                apply: { writer in
                    try writer.delete(ref, expectedVersion: nil)
                    return nil
                },
                failureRecord: { _ in nil },
                completion: { outcomes.record(0, $0) }
            )
        ])
        #expect((try? outcomes.wait(for: 1)[0]?.get()) != nil)
        #expect(cofferError { _ = try f.store.info(ref) }?.code == .notFound)
    }

    @Test func theMapGrowsUpToItsLimit() throws {
        let f = try StoreFixture(mapSize: 256 << 20)
        let initial = f.store.env.mapSize
        #expect(initial == StoreConfiguration.defaultInitialMapSize)
        let queue = try queue(f)
        defer { queue.stop() }
        let big = String(repeating: "y", count: 60_000)
        for index in 0..<1200 {
            let outcomes = Outcomes()
            queue.submit([try putJob(f, "http/g\(index)", big, index: 0, outcomes: outcomes)])
            #expect((try? outcomes.wait(for: 1)[0]?.get()) != nil)
        }
        #expect(f.store.env.mapSize > initial)
        #expect(f.store.env.mapSize <= 256 << 20)
    }
}

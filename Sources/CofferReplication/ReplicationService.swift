import CofferCore
import CofferStore
import Foundation
import Logging
import ServiceLifecycle

/// Keeps a cluster node's store caught up with the cluster's log, and `status` true to it.
///
/// Three tasks in one group: one listens for the log's notifications, one ticks every `poll` (a lost
/// notification costs at most that), and one reads the log on each of them: the head and the entries after this
/// node's revision, in one snapshot, each read bounded by `readDeadline`. What it reads is judged by
/// `LogVerdict` against where the store stood before the read; entries to apply go to the writer's thread
/// (`CommitQueue.alone`), which checks each batch's link and records. A log that cannot be followed (rolled back,
/// rewritten, cut, a batch that fails its check) makes the node fail closed: it serves no value and takes no
/// write, and it keeps reading, so that it recovers on its own once the log is whole again. While the database
/// cannot be used the node serves what it has until `status.staleAfter`.
public final class ReplicationService: Service, Sendable {
    private let store: ConnectionStore
    private let commits: CommitQueue
    private let log: any ReplicationLog
    private let status: ReplicationStatus
    private let poll: Duration
    private let readDeadline: Duration
    private let batchLimit: Int
    private let logger: Logger
    private let clock: @Sendable () -> Date

    public init(
        store: ConnectionStore,
        commits: CommitQueue,
        log: any ReplicationLog,
        status: ReplicationStatus,
        poll: Duration = .milliseconds(500),
        readDeadline: Duration = .seconds(1),
        batchLimit: Int = 512,
        clock: @escaping @Sendable () -> Date = { Date() },
        logger: Logger
    ) {
        self.store = store
        self.commits = commits
        self.log = log
        self.status = status
        self.poll = poll
        self.readDeadline = readDeadline
        self.batchLimit = batchLimit
        self.clock = clock
        self.logger = logger
        // A node that was current before it restarted serves what it has, as long as it would have without the
        // restart, until its first read of the log says whether it is behind; a new one only once it caught up.
        status.resume(
            applied: store.revision,
            caughtUp: store.revision > 0 ? store.lastCaughtUp : nil,
            now: clock()
        )
    }

    /// Refuses a store that cannot join: one made before the change feed that holds connections, or one with
    /// changes the log does not hold. When the database cannot be reached the second check waits for the
    /// service's first read (a node restarting during an outage serves what it has); the returned warning
    /// says so.
    public static func checkJoin(
        _ store: ConnectionStore,
        log: any ReplicationLog,
        deadline: Duration = .seconds(5)
    ) async throws(CofferError) -> String? {
        let position = store.logPosition
        if position.revision == 0, try store.status().connections > 0 {
            throw CofferError(
                .failedPrecondition,
                "this store holds connections from before the change feed; a node joins a cluster with an empty store"
            )
        }
        let slice: LogSlice
        do {
            slice = try await LogDeadline.run(deadline, "at start") {
                try await log.read(after: position.revision, limit: 1)
            }
        } catch {
            let failure = store.failure(error)
            guard failure.code == .unavailable else { throw failure }
            return failure.message
        }
        if case .refused = LogVerdict.of(node: position, slice: slice) {
            throw CofferError(
                .failedPrecondition,
                "this store is at revision \(position.revision) and the cluster's log at \(slice.head), with another history: it holds changes the cluster does not (or the log was rolled back); a node joins with an empty store or one of this cluster"
            )
        }
        return nil
    }

    public func run() async throws {
        let (wakes, wake) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.listen(wake) }
            group.addTask { await self.tick(wake) }
            group.addTask {
                await cancelWhenGracefulShutdown {
                    await self.follow(wakes)
                }
            }
            await group.next()
            group.cancelAll()
            wake.finish()
        }
    }

    /// Reads the log whenever woken, until cancelled.
    private func follow(_ wakes: AsyncStream<Void>) async {
        var lastWarning = ""
        await round(&lastWarning)
        for await _ in wakes {
            if Task.isCancelled { return }
            await round(&lastWarning)
        }
    }

    /// The log's notifications, for as long as the service runs; listening again after a failure.
    private func listen(_ wake: AsyncStream<Void>.Continuation) async {
        while !Task.isCancelled {
            do {
                try await log.follow { revision in
                    self.status.notified(revision: revision, at: self.clock())
                    wake.yield()
                }
            } catch {
                if Task.isCancelled { return }
                logger.debug("listening to the cluster's log failed", metadata: ["error": "\(error)"])
            }
            do { try await Task.sleep(for: poll) } catch { return }
        }
    }

    private func tick(_ wake: AsyncStream<Void>.Continuation) async {
        while !Task.isCancelled {
            do { try await Task.sleep(for: poll) } catch { return }
            wake.yield()
        }
    }

    /// One read of the log and what follows from it. While the log holds more than one read brings, it goes
    /// on at once.
    private func round(_ lastWarning: inout String) async {
        while !Task.isCancelled {
            let started = clock()
            let position = store.logPosition
            let slice: LogSlice
            do {
                slice = try await LogDeadline.run(readDeadline, "a read") { [log, position, batchLimit] in
                    try await log.read(after: position.revision, limit: batchLimit)
                }
            } catch {
                if Task.isCancelled { return }
                let message = store.failure(error).message
                status.unreachable(message)
                if message != lastWarning {
                    logger.warning("the cluster's database cannot be used", metadata: ["error": "\(message)"])
                    lastWarning = message
                }
                return
            }
            if !lastWarning.isEmpty {
                logger.notice("the cluster's database is reachable again")
                lastWarning = ""
            }
            let verdict = LogVerdict.of(node: position, slice: slice)
            if let failure = verdict.failure { return fail(failure) }
            var applied = position.revision
            if case .behind(let entries) = verdict {
                let head = slice.head
                switch await commits.alone({ [store] () throws(CofferError) -> UInt64 in
                    try store.applyFromLog(entries, readFrom: position, head: head, readAt: started)
                }) {
                case .success(let reached):
                    applied = reached
                case .failure(let error) where error.code == .dataLoss:
                    return fail(error)
                case .failure(let error):
                    // Not applied (a full map, a failing disk): the node knows it is behind all the same.
                    status.read(started: started, head: slice.head, applied: position.revision)
                    logger.warning(
                        "batches of the cluster's log could not be applied",
                        metadata: ["error": "\(error.message)"]
                    )
                    return
                }
            }
            mend()
            status.read(started: started, head: slice.head, applied: applied)
            if applied >= slice.head { return }
        }
    }

    private func fail(_ error: CofferError) {
        if status.snapshot.failure != error.message {
            logger.error(
                "stopped following the cluster's log: this node serves no values and takes no writes",
                metadata: ["reason": "\(error.message)"]
            )
        }
        status.fail(error.message)
    }

    private func mend() {
        guard let failure = status.snapshot.failure else { return }
        logger.notice("the cluster's log can be followed again", metadata: ["was": "\(failure)"])
        status.mended()
    }
}

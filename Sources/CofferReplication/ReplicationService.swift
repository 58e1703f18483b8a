import CofferCore
import CofferStore
import Foundation
import Logging
import PostgresNIO
import ServiceLifecycle

/// Keeps a cluster node's store caught up with the cluster's log: it applies every batch other nodes wrote, in
/// revision order, when a NOTIFY rings and at least every `poll` (a dropped notification costs at most that),
/// and keeps `status` current for Health and for the rule that values are served only from a current node. A
/// batch that fails its check is never applied: the node reports it and stops applying. While the database
/// cannot be reached it keeps trying; the node serves values from its store until `status.staleAfter`.
public final class ReplicationService: Service, @unchecked Sendable {
    private let store: ConnectionStore
    private let log: PostgresLog
    private let status: ReplicationStatus
    private let poll: Duration
    private let logger: Logger
    private let clock: @Sendable () -> Date

    // Guarded by `condition`.
    private let condition = NSCondition()
    private var rung = false
    private var stopping = false
    private var finished = false

    public init(
        store: ConnectionStore,
        log: PostgresLog,
        status: ReplicationStatus,
        poll: Duration = .seconds(1),
        clock: @escaping @Sendable () -> Date = { Date() },
        logger: Logger
    ) {
        self.store = store
        self.log = log
        self.status = status
        self.poll = poll
        self.clock = clock
        self.logger = logger
        // A node that was current before it restarted serves what it has, as long as it would have without the
        // restart; a new one only once it has caught up.
        if store.revision > 0, let last = store.lastReplicated {
            status.update { snapshot in
                snapshot.ready = true
                snapshot.lastSync = last
                snapshot.applied = store.revision
            }
        }
    }

    /// Refuses a store that cannot join: one made before the change feed that holds connections, or one with
    /// changes the log does not hold. When the database cannot be reached the second check waits for the
    /// service's first contact (a node restarting during an outage serves what it has); the returned warning
    /// says so.
    public static func checkJoin(_ store: ConnectionStore, log: PostgresLog) throws(CofferError) -> String? {
        let revision = store.revision
        if revision == 0, try store.status().connections > 0 {
            throw CofferError(
                .failedPrecondition,
                "this store holds connections from before the change feed; a node joins a cluster with an empty store"
            )
        }
        let head: UInt64
        do {
            head = try log.head()
        } catch {
            let failure = store.failure(error)
            guard failure.code == .unavailable else { throw failure }
            return failure.message
        }
        if revision > head {
            throw CofferError(
                .failedPrecondition,
                "this store is at revision \(revision) and the cluster's log at \(head): it holds changes the cluster does not (or the log was rolled back); a node joins with an empty store or one of this cluster"
            )
        }
        return nil
    }

    public func run() async throws {
        let thread = Thread { self.follow() }
        thread.name = "coffer-replication"
        thread.start()
        await withTaskCancellationHandler {
            await withGracefulShutdownHandler {
                await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
                    Thread {
                        self.condition.withLock { while !self.finished { self.condition.wait() } }
                        done.resume()
                    }.start()
                }
            } onGracefulShutdown: {
                self.stop()
            }
        } onCancel: {
            self.stop()
        }
    }

    /// Stops following; `run` returns once the thread has.
    public func stop() {
        condition.withLock {
            stopping = true
            condition.broadcast()
        }
    }

    private func ring() {
        condition.withLock {
            rung = true
            condition.broadcast()
        }
    }

    private func follow() {
        var listener: PostgresConnection?
        var failed = false
        var lastWarning = ""
        while !condition.withLock({ stopping }) {
            if !failed {
                if listener == nil || listener?.isClosed == true {
                    listener = try? log.listen { [weak self] in self?.ring() }
                }
                do {
                    try catchUp()
                    if !lastWarning.isEmpty { logger.notice("the cluster's database is reachable again") }
                    lastWarning = ""
                } catch let error as CofferError where error.code == .dataLoss {
                    failed = true
                    status.update { $0.failure = error.message }
                    logger.error("stopped applying the cluster's log", metadata: ["reason": "\(error.message)"])
                } catch {
                    let message = (error as? CofferError)?.message ?? "\(error)"
                    status.update { $0.unreachable = message }
                    if message != lastWarning {
                        logger.warning("the cluster's database cannot be used", metadata: ["error": "\(message)"])
                        lastWarning = message
                    }
                }
            }
            condition.withLock {
                let deadline = Date().addingTimeInterval(poll.timeInterval)
                while !rung && !stopping && condition.wait(until: deadline) {}
                rung = false
            }
        }
        _ = try? listener?.close().wait()
        log.close()
        condition.withLock {
            finished = true
            condition.broadcast()
        }
    }

    /// Applies every batch the log holds past this store's revision; then notes that the node is current.
    private func catchUp() throws {
        while try store.catchUp(from: log, limit: 512) > 0 {
            status.update { $0.applied = store.revision }
        }
        let head = try log.head()
        // The head says there is more, and the log holds none of it (once this node's own write in flight, which
        // catching up waits for, has committed).
        if head > store.revision, try store.catchUp(from: log, limit: 512) == 0, head > store.revision {
            throw CofferError(
                .dataLoss,
                "the cluster's log says it reaches revision \(head) but holds nothing after this node's \(store.revision): its rows were removed"
            )
        }
        let applied = store.revision
        if applied > head {
            throw CofferError(
                .dataLoss,
                "the cluster's log ends at revision \(head), before this node's \(applied): it was rolled back"
            )
        }
        let now = clock()
        status.update { snapshot in
            snapshot.head = head
            snapshot.applied = applied
            snapshot.unreachable = nil
            snapshot.confirmed = true
            if applied == head {
                snapshot.lastSync = now
                snapshot.ready = true
            }
        }
    }
}

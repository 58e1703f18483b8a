import CofferCore
import Foundation

/// The store's one writer: a thread that takes every mutation waiting and runs them together in one write
/// transaction, each nested in its own so that one failing does not undo the others, then commits with one
/// sync and only then completes them (group commit). Each mutation's audit record, success or failure, is
/// written in that same transaction. It also folds the audit journal into the store when asked to (by the
/// audit writer's cadence, or the journal filling up) and before a read of the trail.
///
/// LMDB allows one writer at a time and a write transaction must begin and commit on one thread, so a
/// thread of its own is the natural owner; nothing else in a serving cofferd writes.
public final class CommitQueue: @unchecked Sendable {
    /// One mutation.
    public struct Job: Sendable {
        /// Whether it makes room or takes access away, so that it may use the store's reserve on a full map.
        public var usesReserve: Bool
        /// Whether the audit journal is folded into the store before it runs, so that a read of the trail
        /// sees every record taken before it.
        public var foldsJournalFirst: Bool
        /// Makes the change in a nested transaction; returns its audit record, written in the same
        /// transaction, or nil for none.
        public var apply: @Sendable (StoreWriter) throws -> AuditEvent?
        /// Its audit record when it fails, with the failure's outcome; nil for none.
        public var failureRecord: @Sendable (CofferError) -> AuditEvent?
        /// Called once, on the writer's thread, after the commit that covers the change (or with why it
        /// failed). Keep it short: hand the result to where it is wanted.
        public var completion: @Sendable (Result<Void, CofferError>) -> Void
        /// When it was queued: in a cluster, its write deadline counts from here.
        var queued = ContinuousClock.now
        /// A client's request: in a cluster, answered only once the log confirms the state it was answered from
        /// (see `ConnectionStore.write`). The writer's own upkeep (purging tokens, re-encrypting) is not.
        public var confirms: Bool

        public init(
            usesReserve: Bool,
            confirms: Bool = true,
            foldsJournalFirst: Bool = false,
            apply: @escaping @Sendable (StoreWriter) throws -> AuditEvent?,
            failureRecord: @escaping @Sendable (CofferError) -> AuditEvent?,
            completion: @escaping @Sendable (Result<Void, CofferError>) -> Void
        ) {
            self.usesReserve = usesReserve
            self.confirms = confirms
            self.foldsJournalFirst = foldsJournalFirst
            self.apply = apply
            self.failureRecord = failureRecord
            self.completion = completion
        }
    }

    private enum State {
        case created, running, stopping, stopped
    }

    /// Work for the writer's thread: mutations, run together, or a task that runs alone (applying batches of a
    /// cluster's log).
    private enum Work {
        case mutation(Job)
        case alone(@Sendable () -> Void)
    }

    // Safe to share: everything below is guarded by `condition`.
    private let condition = NSCondition()
    private var work: [Work] = []
    private var state = State.created
    private var foldRequested = false
    private var thread: Thread?
    private let finished = DispatchSemaphore(value: 0)

    public let store: ConnectionStore
    public let journal: AuditJournal
    /// The most mutations in one transaction.
    public let maxBatch: Int
    private let log: @Sendable (String, CofferError) -> Void

    /// `log` receives a constant message and the error of a failure nobody waits for (a fold).
    public init(
        store: ConnectionStore,
        journal: AuditJournal,
        maxBatch: Int = 1024,
        log: @escaping @Sendable (String, CofferError) -> Void = { _, _ in }
    ) {
        self.store = store
        self.journal = journal
        self.maxBatch = maxBatch
        self.log = log
    }

    /// Starts the writer's thread.
    public func start() {
        condition.withLock {
            guard state == .created else { return }
            state = .running
            let thread = Thread { [self] in run() }
            thread.name = "coffer-writer"
            self.thread = thread
            thread.start()
        }
    }

    /// Queues `jobs`; they run in this order. After `stop`, each is completed at once with UNAVAILABLE.
    public func submit(_ jobs: [Job]) {
        let now = ContinuousClock.now
        let accepted = condition.withLock { () -> Bool in
            guard state == .running || state == .created else { return false }
            for var job in jobs {
                job.queued = now
                work.append(.mutation(job))
            }
            condition.signal()
            return true
        }
        if !accepted {
            for job in jobs { job.completion(.failure(CofferError(.unavailable, "cofferd is shutting down"))) }
        }
    }

    /// Runs `body` on the writer's thread, alone, after what is queued before it, and returns its result: for
    /// what must not interleave with a batch of mutations (applying batches of a cluster's log).
    public func alone<R: Sendable>(
        _ body: @escaping @Sendable () throws(CofferError) -> R
    ) async -> Result<R, CofferError> {
        await withCheckedContinuation { (continuation: CheckedContinuation<Result<R, CofferError>, Never>) in
            let task: @Sendable () -> Void = {
                do throws(CofferError) {
                    continuation.resume(returning: .success(try body()))
                } catch {
                    continuation.resume(returning: .failure(error))
                }
            }
            let accepted = condition.withLock { () -> Bool in
                guard state == .running || state == .created else { return false }
                work.append(.alone(task))
                condition.signal()
                return true
            }
            if !accepted {
                continuation.resume(returning: .failure(CofferError(.unavailable, "cofferd is shutting down")))
            }
        }
    }

    /// Runs `apply` as one job, without an audit record, and returns its result once the commit that covers
    /// it is synced: for the services that write beside the request path (the token janitor, the
    /// re-encryption).
    public func perform<R: Sendable>(
        usesReserve: Bool = false,
        _ apply: @escaping @Sendable (StoreWriter) throws -> R
    ) async -> Result<R, CofferError> {
        let box = ResultBox<R>()
        let outcome = await withCheckedContinuation {
            (continuation: CheckedContinuation<Result<Void, CofferError>, Never>) in
            submit([
                Job(
                    usesReserve: usesReserve,
                    confirms: false,
                    apply: { writer in
                        box.value = try apply(writer)
                        return nil
                    },
                    failureRecord: { _ in nil },
                    completion: { continuation.resume(returning: $0) }
                )
            ])
        }
        return outcome.flatMap {
            box.value.map { .success($0) }
                ?? .failure(CofferError(.internal, "a writer job completed without a result"))
        }
    }

    /// Asks for the journal to be folded into the store.
    public func requestFold() {
        condition.withLock {
            foldRequested = true
            condition.signal()
        }
    }

    /// Runs what is queued, folds the journal a last time and stops the thread; returns when it has.
    public func stop() {
        let wait = condition.withLock { () -> Bool in
            switch state {
            case .created:
                state = .stopped
                return false
            case .running:
                state = .stopping
                condition.signal()
                return true
            case .stopping, .stopped:
                return false
            }
        }
        if wait { finished.wait() }
    }

    private func run() {
        while true {
            let (next, fold, stopping) = self.next()
            var batch: [Job] = []
            var alone: (@Sendable () -> Void)?
            for item in next {
                switch item {
                case .mutation(let job): batch.append(job)
                case .alone(let task): alone = task
                }
            }
            if fold || stopping || batch.contains(where: \.foldsJournalFirst) { foldJournal() }
            if !batch.isEmpty { commit(batch) }
            alone?()
            if stopping && next.isEmpty {
                condition.withLock { state = .stopped }
                finished.signal()
                return
            }
        }
    }

    /// Waits for work: a run of mutations (or one task that runs alone), a fold asked for, or the end.
    private func next() -> (work: [Work], fold: Bool, stopping: Bool) {
        condition.lock()
        defer { condition.unlock() }
        while work.isEmpty && !foldRequested && state == .running { condition.wait() }
        var count = 0
        if case .alone? = work.first {
            count = 1
        } else {
            while count < min(work.count, maxBatch), case .mutation = work[count] { count += 1 }
        }
        let taken = Array(work.prefix(count))
        work.removeFirst(count)
        let fold = foldRequested
        foldRequested = false
        return (taken, fold, state == .stopping)
    }

    /// Moves the journal's records into the store (a synced transaction per chunk), oldest first, and the
    /// records of changes waiting in the store with them. On failure they stay in the journal and come back
    /// next time.
    private func foldJournal() {
        do throws(CofferError) {
            let folded = try journal.fold { records, through, pending throws(CofferError) in
                try store.write { writer in
                    try writer.foldAudit(records, journalThrough: through, pendingThrough: pending)
                }
            }
            guard folded == 0, store.hasPendingAudit else { return }
            try store.write { writer in try writer.foldAudit([]) }
        } catch {
            log("audit records could not be moved from the journal into the store", error)
        }
    }

    /// Runs `batch` in one transaction; when the map is full at its limit, runs each job alone so that
    /// those that may use the reserve can.
    private func commit(_ batch: [Job]) {
        var outcomes = [Result<Void, CofferError>](repeating: .success(()), count: batch.count)
        do throws(CofferError) {
            try store.write(confirming: batch.contains(where: \.confirms), queued: batch.map(\.queued).min()) {
                writer in
                for (index, job) in batch.enumerated() {
                    outcomes[index] = try Self.apply(job, writer)
                }
            }
        } catch {
            if error.code == .resourceExhausted, batch.count > 1 || batch.contains(where: \.usesReserve) {
                for job in batch { commit(alone: job) }
                return
            }
            failAll(batch, error)
            return
        }
        for (job, outcome) in zip(batch, outcomes) { job.completion(outcome) }
    }

    private func commit(alone job: Job) {
        var outcome = Result<Void, CofferError>.success(())
        do throws(CofferError) {
            try store.write(usingReserve: job.usesReserve, confirming: job.confirms, queued: job.queued) { writer in
                outcome = try Self.apply(job, writer)
            }
            job.completion(outcome)
        } catch {
            failAll([job], error)
        }
    }

    /// Applies one job in a nested transaction and writes its record; a full map aborts the whole
    /// transaction, so that the store can grow and run it again.
    private static func apply(_ job: Job, _ writer: StoreWriter) throws -> Result<Void, CofferError> {
        do {
            let record = try writer.nested { nested in try job.apply(nested) }
            if let record { try writer.appendAudit(record) }
            return .success(())
        } catch let error as LMDBError where error.kind == .mapFull {
            throw error
        } catch {
            let failure = writer.store.failure(error)
            if let record = job.failureRecord(failure) { try writer.appendAudit(record) }
            return .failure(failure)
        }
    }

    /// The transaction did not commit: every job in it failed, and their failure records go to the journal.
    private func failAll(_ batch: [Job], _ error: CofferError) {
        let records = batch.compactMap { $0.failureRecord(error) }
        do throws(CofferError) {
            try journal.append(records)
        } catch let journalError {
            log("the audit records of failed mutations could not be written", journalError)
        }
        for job in batch { job.completion(.failure(error)) }
    }
}

/// Carries a job's result from the writer's thread to its completion.
private final class ResultBox<R>: @unchecked Sendable {
    // Written by the job's `apply` and read after its `completion`, which follows it on the writer's thread.
    var value: R?
}

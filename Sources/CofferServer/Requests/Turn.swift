import CofferCore
import CofferStore
import CofferWire
import NIOCore
import NIOPosix

/// One turn of one client: its planned requests performed in order, and their answers. Confined to the
/// client's event loop; the asynchronous steps (scans, changes) come back to it.
final class Turn {
    private let pipeline: RequestPipeline
    private let client: ClientIdentity
    private let loop: any EventLoop
    private var planned: [RequestPipeline.Planned]

    private enum Answer {
        /// With the change feed's revision of what it changed, or 0.
        case result(OperationResult, revision: UInt64 = 0)
        case error(CofferError)
    }

    /// One request's answer and its audit record.
    private struct Slot {
        var answer: Answer?
        /// To append to the journal before the answer goes out; nil when written with a change, or not audited.
        var record: AuditEvent?
        /// The record is counted with others; the answer waits for it.
        var counted: EventLoopFuture<CofferError?>?
    }

    private var slots: [Slot]
    /// Requests performed so far; the rest wait for the next turn once the answers are large.
    private var served = 0
    private var answerBytes = 0
    private let started = ContinuousClock.now
    /// A Watch ends its turn: what follows it on the connection is not served.
    private var watching: Int?

    init(pipeline: RequestPipeline, client: ClientIdentity, loop: any EventLoop, planned: [RequestPipeline.Planned]) {
        self.pipeline = pipeline
        self.client = client
        self.loop = loop
        self.planned = planned
        slots = Array(repeating: Slot(), count: planned.count)
    }

    func run() -> EventLoopFuture<TurnResult> {
        advance()
    }

    /// Performs requests from `served` on: at once while they are cheap (a run of short reads in one read
    /// transaction), and by a step off the event loop for a scan or a run of changes, after which it goes on.
    /// It stops taking requests once the answers are large.
    private func advance() -> EventLoopFuture<TurnResult> {
        while served < planned.count, answerBytes < pipeline.configuration.maxAnswerBytesPerTurn, watching == nil {
            let index = served
            switch planned[index].plan {
            case .failure(let error):
                fail(index, error)
                served += 1
            case .success(.done(let result)):
                succeed(index, result)
                served += 1
            case .success(.read):
                performReads()
            case .success(.scan(let scan)):
                settle()
                served += 1
                return runScan(index, scan).assumeIsolated().flatMap { self.advance() }.nonisolated()
            case .success(.write):
                settle()
                var end = index
                while end < planned.count, case .success(.write) = planned[end].plan { end += 1 }
                served = end
                return runWrites(index..<end).assumeIsolated().flatMap { self.advance() }.nonisolated()
            }
        }
        settle()
        return finish()
    }

    /// Performs the run of short reads starting at `served` in one read transaction, while the answers
    /// have room.
    private func performReads() {
        let limit = pipeline.configuration.maxAnswerBytesPerTurn
        do throws(CofferError) {
            try pipeline.store.read { reader in
                while served < planned.count, answerBytes < limit, watching == nil,
                    case .success(.read(let read)) = planned[served].plan
                {
                    // A read of a stale snapshot throws out of the transaction; `read` runs this again on a
                    // fresh one, from the same request.
                    try performRead(served, read, reader)
                    if planned[served].operation == .watch { watching = served }
                    served += 1
                }
            }
        } catch {
            // The transaction could not begin: the store is closed or failing.
            fail(served, error)
            served += 1
        }
    }

    private func succeed(_ index: Int, _ result: OperationResult) {
        slots[index].answer = .result(result)
        answerBytes += Self.estimatedSize(result)
        if planned[index].operation?.traits.audit != CofferAudit.none {
            slots[index].record = planned[index].context.event
        }
    }

    private func fail(_ index: Int, _ error: CofferError) {
        let reported = pipeline.reported(error, operation: planned[index].operation)
        slots[index].answer = .error(reported)
        var event = planned[index].context.event
        event.outcome = reported.code
        slots[index].record = event
    }

    /// Writes the records of everything answered so far: one journal append, plus the counted denials.
    private func settle() {
        var records: [AuditEvent] = []
        var recorded: [Int] = []
        for index in slots.indices {
            guard let record = slots[index].record else { continue }
            slots[index].record = nil
            if DenialAggregator.counts(record) {
                slots[index].counted = pipeline.denials.add(record, on: loop)
            } else {
                records.append(record)
                recorded.append(index)
            }
        }
        pipeline.configuration.metrics?.auditBatchWritten(records.count)
        do throws(CofferError) {
            try pipeline.journal.append(records)
        } catch {
            // Fail closed: what these records were for is withheld, and the caller is told why.
            let withheld = pipeline.reported(error, operation: nil)
            for index in recorded { slots[index].answer = .error(withheld) }
        }
    }

    private func performRead(
        _ index: Int,
        _ read: @Sendable (StoreReader, inout AuditEvent) throws -> OperationResult,
        _ reader: StoreReader
    ) throws {
        var event = planned[index].context.event
        do {
            let result = try read(reader, &event)
            planned[index].context.event = event
            succeed(index, result)
        } catch {
            if pipeline.store.mustRetry(error, in: reader) { throw error }
            planned[index].context.event = event
            fail(index, pipeline.store.failure(error))
        }
    }

    private func runScan(
        _ index: Int,
        _ scan: @escaping @Sendable (StoreReader) throws -> OperationResult
    )
        -> EventLoopFuture<Void>
    {
        let store = pipeline.store
        return pipeline.background.runIfActive(eventLoop: loop) { () throws(CofferError) -> OperationResult in
            // A scan reads metadata, never a value: a record changed since its snapshot is taken as it was.
            try store.read(tolerant: true) { reader in try scan(reader) }
        }.assumeIsolated().map { result in
            self.succeed(index, result)
        }.recover { error in
            self.fail(index, Self.coffer(error))
        }.nonisolated()
    }

    /// Prepares a run of changes off the event loop, then hands them to the writer together: one commit.
    private func runWrites(_ range: Range<Int>) -> EventLoopFuture<Void> {
        let writes = range.map { index -> Plan.Write in
            guard case .success(.write(let write)) = planned[index].plan else { preconditionFailure() }
            return write
        }
        let prepared: EventLoopFuture<[Result<Plan.Write.Apply, CofferError>]>
        if writes.contains(where: { $0.prepare != nil }) {
            prepared = pipeline.background.runIfActive(eventLoop: loop) {
                writes.map { write -> Result<Plan.Write.Apply, CofferError> in
                    if let apply = write.apply { return .success(apply) }
                    do throws(CofferError) { return .success(try write.prepare!()) } catch { return .failure(error) }
                }
            }.recover { error in writes.map { _ in .failure(Self.coffer(error)) } }
        } else {
            prepared = loop.makeSucceededFuture(writes.map { .success($0.apply!) })
        }
        return prepared.assumeIsolated().flatMap { applies in
            var jobs: [CommitQueue.Job] = []
            var outcomes: [EventLoopFuture<Void>] = []
            for (offset, index) in range.enumerated() {
                switch applies[offset] {
                case .failure(let error):
                    self.fail(index, error)
                case .success(let apply):
                    let (job, done) = self.job(index, apply, foldsJournalFirst: writes[offset].foldsJournalFirst)
                    jobs.append(job)
                    outcomes.append(done)
                }
            }
            // The records of failed preparations go first, in request order.
            self.settle()
            self.pipeline.commits.submit(jobs)
            return EventLoopFuture.andAllComplete(outcomes, on: self.loop)
        }.nonisolated()
    }

    /// A commit job for one change, and a future that completes on the loop when its answer is known.
    private func job(
        _ index: Int,
        _ apply: @escaping Plan.Write.Apply,
        foldsJournalFirst: Bool
    )
        -> (CommitQueue.Job, EventLoopFuture<Void>)
    {
        let promise = loop.makePromise(of: (OperationResult, UInt64).self)
        let event = planned[index].context.event
        let operation = planned[index].operation
        let box = ResultBox()
        let job = CommitQueue.Job(
            usesReserve: operation?.traits.usesReserve ?? false,
            foldsJournalFirst: foldsJournalFirst,
            apply: { writer in
                var record = event
                box.result = try apply(writer, &record)
                box.revision = writer.lastRevision ?? 0
                record.outcome = .ok
                return record
            },
            failureRecord: { error in
                var record = event
                record.outcome = error.code
                return record
            },
            completion: { outcome in
                switch outcome {
                case .success: promise.succeed((box.result!, box.revision))
                case .failure(let error): promise.fail(error)
                }
            }
        )
        let done = promise.futureResult.assumeIsolated().map { result, revision in
            self.slots[index].answer = .result(result, revision: revision)
        }.recover { error in
            self.slots[index].answer = .error(self.pipeline.reported(Self.coffer(error), operation: operation))
        }.nonisolated()
        return (job, done)
    }

    /// Waits for the counted denials' records, then frames every answer in order.
    private func finish() -> EventLoopFuture<TurnResult> {
        let counted = slots.indices.compactMap { index in
            slots[index].counted.map { future in
                future.assumeIsolated().map { failure in
                    if let failure { self.slots[index].answer = .error(failure) }
                }.nonisolated()
            }
        }
        if counted.isEmpty { return loop.makeSucceededFuture(encode()) }
        return EventLoopFuture.andAllComplete(counted, on: loop).assumeIsolated().map { self.encode() }.nonisolated()
    }

    private func encode() -> TurnResult {
        var buffer = ByteBufferAllocator().buffer(capacity: min(answerBytes + 64 * served, 1 << 20))
        var productive = false
        for index in 0..<served {
            var response = Coffer_V1_Response()
            response.id = planned[index].context.id
            switch slots[index].answer {
            case .result(let result, let revision)?:
                response.status = .ok
                response.result = result
                response.revision = revision
            case .error(let error)?:
                response.status = Coffer_V1_Status(error)
            case nil:
                response.status = Coffer_V1_Status(CofferError(.internal, "internal error"))
            }
            RequestPipeline.encode(response, into: &buffer)
            if planned[index].operation != .health { productive = true }
            if let metrics = pipeline.configuration.metrics {
                let outcome = StatusCode(response.status.code)
                metrics.answered(
                    planned[index].operation?.rawValue ?? "Malformed",
                    outcome,
                    after: ContinuousClock.now - started
                )
            }
        }
        var watch: WatchSpec?
        if let index = watching, case .error? = slots[index].answer {
            // Not started (its record could not be written, say): the place it took goes back now.
            planned[index].context.watch?.place.release()
        }
        if let index = watching, case .result(.watchEvent(let started), _)? = slots[index].answer {
            watch = planned[index].context.watch
            watch?.requestID = planned[index].context.id
            watch?.started = started.revision
            watch?.workflow = planned[index].context.event.workflow
        }
        return TurnResult(answers: buffer, served: served, productive: productive, watch: watch)
    }

    /// A rough size of an answer, to end a turn whose answers grow large.
    private static func estimatedSize(_ result: OperationResult) -> Int {
        switch result {
        case .get(let get): get.fields.reduce(64) { $0 + $1.value.count + $1.name.utf8.count + 8 }
        case .list(let list): list.connections.count * 128
        case .audit(let audit): audit.records.count * 128
        default: 64
        }
    }

    static func coffer(_ error: any Error) -> CofferError {
        if let error = error as? CofferError { return error }
        return CofferError(.unavailable, "cofferd is shutting down", cause: error)
    }
}

private typealias CofferAudit = AuditPolicy

/// Carries a change's result from the writer's thread to its completion on the same thread.
private final class ResultBox: @unchecked Sendable {
    // Written by `apply` and read by `completion`, both on the writer's thread, one after the other.
    var result: OperationResult?
    var revision: UInt64 = 0
}

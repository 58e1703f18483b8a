import CofferCore
import CofferStore
import Logging
import NIOPosix
import Synchronization

/// Collects the audit records of requests that change nothing and writes them in batches: one
/// transaction, one fsync, per batch rather than per get.
final class AuditBatcher: Sendable {
    private let store: ConnectionStore
    private let pool: NIOThreadPool
    private let logger: Logger
    private let flushSize: Int
    private let pending = Mutex<[AuditEvent]>([])
    /// Serialises flushes so that records are written in the order they were taken.
    private let flushing = Mutex<Void>(())

    init(store: ConnectionStore, pool: NIOThreadPool, flushSize: Int, logger: Logger) {
        self.store = store
        self.pool = pool
        self.flushSize = flushSize
        self.logger = logger
    }

    /// Queues a record; a full batch is written at once.
    func record(_ event: AuditEvent) async {
        let full = pending.withLock { pending in
            pending.append(event)
            return pending.count >= flushSize
        }
        if full { await flush() }
    }

    /// Writes whatever is queued.
    func flush() async {
        do {
            try await pool.runIfActive { [self] in flushNow() }
        } catch {
            // The pool is stopping: write on this thread instead of losing the records.
            flushNow()
        }
    }

    /// Writes whatever is queued, on the calling thread (which may block).
    func flushNow() {
        flushing.withLock { _ in
            let batch = pending.withLock { pending -> [AuditEvent] in
                defer { pending.removeAll(keepingCapacity: true) }
                return pending
            }
            guard !batch.isEmpty else { return }
            do throws(CofferError) {
                try store.appendAudit(batch)
            } catch {
                logger.error("audit records could not be written", metadata: [
                    "count": "\(batch.count)", "error": "\(error.message)", "cause": "\(error.cause.map { "\($0)" } ?? "")",
                ])
            }
        }
    }

    /// Writes queued records every `interval` until cancelled.
    func run(interval: Duration) async {
        while !Task.isCancelled {
            do { try await Task.sleep(for: interval) } catch { break }
            await flush()
        }
    }
}

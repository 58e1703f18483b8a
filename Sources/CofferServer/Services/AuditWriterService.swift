import CofferCore
import CofferStore
import Logging
import ServiceLifecycle

/// Keeps the audit trail durable: every `interval` it flushes the journal to the disk and asks the writer to
/// fold it into the store. Records of reads reach the disk within one interval even when the store refuses
/// them (a full map); records of changes are synced with their change.
public final class AuditWriterService: Service, Sendable {
    private let commits: CommitQueue
    private let interval: Duration
    private let logger: Logger

    public init(commits: CommitQueue, interval: Duration = .seconds(1), logger: Logger) {
        self.commits = commits
        self.interval = interval
        self.logger = logger
    }

    public func run() async throws {
        while !Task.isShuttingDownGracefully {
            do {
                try await cancelWhenGracefulShutdown { try await Task.sleep(for: self.interval) }
            } catch {
                break
            }
            flush()
        }
        flush()
    }

    private func flush() {
        guard commits.journal.pendingCount > 0 else { return }
        do throws(CofferError) {
            try commits.journal.sync()
        } catch {
            logger.error("the audit journal could not be synced", metadata: ["error": "\(error.message)"])
        }
        commits.requestFold()
    }
}

import CofferCore
import CofferStore
import Foundation
import Logging
import ServiceLifecycle

/// After a rotation, moves every stored record to the active key generation: one batch at a time, each its own
/// job in the commit queue (so admins' writes interleave with it and Gets, which read snapshots, never wait),
/// each saving its cursor in its own transaction, so that a crash resumes where the last commit left off.
public final class ReencryptionService: Service, Sendable {
    private let commits: CommitQueue
    private let batch: Int
    private let idleInterval: Duration
    private let logger: Logger

    public init(commits: CommitQueue, batch: Int = 256, idleInterval: Duration = .milliseconds(100), logger: Logger) {
        self.commits = commits
        self.batch = batch
        self.idleInterval = idleInterval
        self.logger = logger
    }

    public func run() async throws {
        var fields = 0
        var started: ContinuousClock.Instant?
        while !Task.isShuttingDownGracefully {
            if commits.store.reencryptionPending {
                if started == nil {
                    started = .now
                    logger.notice("re-encrypting the store to the active key generation")
                }
                switch await step() {
                case .success(let step):
                    fields += step.fields
                    if step.done, let began = started {
                        logger.notice(
                            "re-encryption finished",
                            metadata: [
                                "fields": "\(fields)", "seconds": "\((ContinuousClock.now - began).timeInterval)",
                            ]
                        )
                        fields = 0
                        started = nil
                    }
                    continue
                case .failure(let error):
                    logger.warning(
                        "a re-encryption batch failed; it will be tried again",
                        metadata: ["error": "\(error.message)"]
                    )
                }
            }
            do {
                try await cancelWhenGracefulShutdown { try await Task.sleep(for: self.idleInterval) }
            } catch {
                return
            }
        }
    }

    private func step() async -> Result<ReencryptionStep, CofferError> {
        let batch = self.batch
        return await commits.perform { try $0.reencrypt(limit: batch) }
    }
}

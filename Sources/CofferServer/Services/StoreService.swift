import CofferStore
import Logging
import ServiceLifecycle

/// The store and its writer as a service: the writer's thread runs while cofferd serves; on shutdown, which
/// comes last, the writer finishes what is queued and folds the audit journal, then the store closes.
public final class StoreService: Service, Sendable {
    private let store: ConnectionStore
    private let commits: CommitQueue
    private let logger: Logger

    public init(store: ConnectionStore, commits: CommitQueue, logger: Logger) {
        self.store = store
        self.commits = commits
        self.logger = logger
    }

    public func run() async throws {
        commits.start()
        try? await gracefulShutdown()
        commits.stop()
        commits.journal.close()
        store.close()
        logger.info("store closed")
    }
}

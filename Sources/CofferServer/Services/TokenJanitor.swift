import CofferCore
import CofferStore
import Foundation
import Logging
import ServiceLifecycle

/// Removes the records of tokens long past their expiry: at start, then every `interval`. A purged token can
/// no longer be used in any case, and its id stays in the audit records that name it.
public final class TokenJanitor: Service, Sendable {
    private let commits: CommitQueue
    private let retention: Duration
    private let interval: Duration
    private let clock: WallClock
    private let logger: Logger

    public init(
        commits: CommitQueue,
        retention: Duration,
        interval: Duration = .seconds(3600),
        clock: @escaping WallClock = { Date() },
        logger: Logger
    ) {
        self.commits = commits
        self.retention = retention
        self.interval = interval
        self.clock = clock
        self.logger = logger
    }

    public func run() async throws {
        while !Task.isShuttingDownGracefully {
            await purge()
            do {
                try await cancelWhenGracefulShutdown { try await Task.sleep(for: self.interval) }
            } catch {
                return
            }
        }
    }

    private func purge() async {
        let cutoff = clock().addingTimeInterval(-retention.timeInterval)
        switch await commits.perform(usesReserve: true, { try $0.purgeTokens(expiredBefore: cutoff) }) {
        case .success(let count) where count > 0:
            logger.info("purged expired tokens", metadata: ["count": "\(count)"])
        case .success:
            break
        case .failure(let error):
            logger.warning("expired tokens could not be purged", metadata: ["error": "\(error.message)"])
        }
    }
}

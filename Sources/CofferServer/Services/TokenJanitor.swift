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
        let count = Counter()
        let result = await withCheckedContinuation {
            (continuation: CheckedContinuation<Result<Void, CofferError>, Never>) in
            commits.submit([
                CommitQueue.Job(
                    usesReserve: true,
                    apply: { writer in
                        count.value = try writer.purgeTokens(expiredBefore: cutoff)
                        return nil
                    },
                    failureRecord: { _ in nil },
                    completion: { continuation.resume(returning: $0) }
                )
            ])
        }
        switch result {
        case .success where count.value > 0:
            logger.info("purged expired tokens", metadata: ["count": "\(count.value)"])
        case .success:
            break
        case .failure(let error):
            logger.warning("expired tokens could not be purged", metadata: ["error": "\(error.message)"])
        }
    }
}

/// Carries the purge's count from the writer's thread to its completion.
private final class Counter: @unchecked Sendable {
    // Written by `apply` and read after `completion`, which follows it.
    var value = 0
}

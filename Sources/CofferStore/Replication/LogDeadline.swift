import CofferCore
import Dispatch
import Foundation
import Synchronization

/// Bounds a call to the cluster's log in time: past its deadline the call is cancelled (which makes a
/// `ReplicationLog` abandon its query and close its connection) and UNAVAILABLE is thrown, saying what did not
/// answer. A database that stops answering (paused, locked, a network that drops packets) costs a caller at most
/// its deadline.
public enum LogDeadline {
    /// Runs `operation`, cancelled and UNAVAILABLE after `limit`.
    /// `shown` is the deadline the message names, when `limit` is what is left of it.
    public static func run<T: Sendable>(
        _ limit: Duration,
        _ what: String,
        shown: Duration? = nil,
        _ operation: @escaping @Sendable () async throws -> T
    ) async throws -> T {
        guard limit > .zero else { throw expired(what, shown ?? limit) }
        return try await withThrowingTaskGroup(of: Outcome<T>.self) { group in
            group.addTask { .done(try await operation()) }
            group.addTask {
                try await Task.sleep(for: limit)
                return .expired
            }
            defer { group.cancelAll() }
            switch try await group.next() {
            case .done(let value)?: return value
            case .expired?, nil: throw expired(what, shown ?? limit)
            }
        }
    }

    /// The same, from a thread that may block (the store's writer), which waits for it; it runs on the log's own
    /// executor, so that a busy cooperative pool cannot hold the writer. It never waits in an LMDB transaction:
    /// callers hold none.
    public static func wait<T: Sendable>(
        _ limit: Duration,
        _ what: String,
        shown: Duration? = nil,
        _ operation: @escaping @Sendable () async throws -> T
    ) throws -> T {
        let result = Mutex<Result<T, any Error>?>(nil)
        let done = DispatchSemaphore(value: 0)
        Task(executorPreference: LogExecutor.shared) {
            let outcome: Result<T, any Error>
            do {
                outcome = .success(try await run(limit, what, shown: shown, operation))
            } catch {
                outcome = .failure(error)
            }
            result.withLock { $0 = outcome }
            done.signal()
        }
        // A log that ignores cancellation still cannot hold the writer past its deadline by more than a moment.
        let backstop = DispatchTime.now() + .nanoseconds(Int(limit.nanoseconds) + 1_000_000_000)
        guard done.wait(timeout: backstop) == .success, let outcome = result.withLock({ $0 }) else {
            throw expired(what, shown ?? limit)
        }
        return try outcome.get()
    }

    static func expired(_ what: String, _ limit: Duration) -> CofferError {
        CofferError(.unavailable, "the cluster's database did not answer \(what) within \(describe(limit))")
    }

    /// A deadline as messages name it: `2 s`, `500 ms`.
    static func describe(_ limit: Duration) -> String {
        let millis = limit.milliseconds
        return millis % 1000 == 0 ? "\(millis / 1000) s" : "\(millis) ms"
    }

    private enum Outcome<T: Sendable>: Sendable {
        case done(T)
        case expired
    }
}

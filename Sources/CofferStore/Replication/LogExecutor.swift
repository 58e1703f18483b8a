import Foundation

/// A task executor with a thread of its own, for the calls the store's writer makes to the cluster's log (its
/// appends and catch-up reads, which it waits for, blocked): they do not wait for the shared cooperative pool,
/// which other work may keep busy. The code it runs never blocks; it only waits for the database's answers.
public final class LogExecutor: TaskExecutor, @unchecked Sendable {
    // Guarded by `condition`.
    private let condition = NSCondition()
    private var jobs: [UnownedJob] = []

    /// The executor every log call of this process runs on.
    public static let shared = LogExecutor(name: "coffer-log")

    public init(name: String) {
        let thread = Thread { self.run() }
        thread.name = name
        thread.start()
    }

    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        condition.withLock {
            jobs.append(job)
            condition.signal()
        }
    }

    private func run() {
        while true {
            let batch = condition.withLock {
                while jobs.isEmpty { condition.wait() }
                defer { jobs = [] }
                return jobs
            }
            for job in batch { job.runSynchronously(on: asUnownedTaskExecutor()) }
        }
    }
}

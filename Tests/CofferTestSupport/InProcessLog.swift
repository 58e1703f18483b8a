import CofferCore
import CofferStore
import Foundation

/// A cluster's replication log held in this process, with the faults a real database has: it can stall (every
/// call waits until it is resumed or its caller's deadline cancels it), lose its newest batches, or have a batch
/// replaced, as someone editing the database's rows would. It checks appends exactly as PostgreSQL's
/// `coffer_append_v1` does, so that the service and the store meet the same answers.
public actor InProcessLog: ReplicationLog {
    private var entries: [ReplicationEntry] = []
    private var head: UInt64 = 0
    private var stalled = false
    private var listeners: [Int: @Sendable (UInt64) -> Void] = [:]
    private var nextListener = 0
    /// Appends and reads answered so far.
    public private(set) var calls = 0

    public init() {}

    public func append(_ entry: ReplicationEntry, after position: LogPosition) async throws {
        try await pass()
        if head > entry.first - 1 { throw LogRefusal.behind(head: head) }
        if head < entry.first - 1 { throw LogRefusal.rolledBack(head: head) }
        if head > 0 {
            guard let last = entries.last(where: { $0.last == head }) else { throw LogRefusal.missingHead(head: head) }
            if last.link != position.link { throw LogRefusal.diverged(at: head) }
        }
        entries.append(entry)
        head = entry.last
        for listener in listeners.values { listener(entry.last) }
    }

    public func read(after revision: UInt64, limit: Int) async throws -> LogSlice {
        try await pass()
        let after = entries.filter { $0.first > revision }.prefix(limit)
        return LogSlice(head: head, headLink: entries.last(where: { $0.last == head })?.link, entries: Array(after))
    }

    public func follow(_ notified: @escaping @Sendable (UInt64) -> Void) async throws {
        let id = nextListener
        nextListener += 1
        listeners[id] = notified
        defer { listeners[id] = nil }
        while !Task.isCancelled {
            try? await Task.sleep(for: .milliseconds(20))
            if stalled { continue }
        }
        throw CancellationError()
    }

    private func pass() async throws {
        calls += 1
        while stalled { try await Task.sleep(for: .milliseconds(2)) }
    }

    // MARK: Faults

    /// Every call waits from now until `resume`.
    public func stall() { stalled = true }
    public func resume() { stalled = false }

    /// Removes the newest `count` batches and moves the head back to what is left, as a restore of an older
    /// copy of the database would; returns them.
    @discardableResult
    public func rollBack(_ count: Int) -> [ReplicationEntry] {
        let removed = Array(entries.suffix(count))
        entries.removeLast(count)
        head = entries.last?.last ?? 0
        return removed
    }

    /// Puts batches back after `rollBack`, as an operator mending the database would.
    public func restore(_ removed: [ReplicationEntry]) {
        entries += removed
        head = entries.last?.last ?? 0
    }

    /// The newest revision the log holds.
    public var revision: UInt64 { head }
}

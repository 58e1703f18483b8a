import Foundation

/// A clock that stands still until a test moves it: tests of expiry wait for nothing.
public final class TestClock: @unchecked Sendable {
    // Safe to share: `date` is guarded by `lock`.
    private let lock = NSLock()
    private var date = Date(timeIntervalSince1970: 1_800_000_000)

    public init() {}

    public var now: Date { lock.withLock { date } }

    public func advance(_ seconds: TimeInterval) { lock.withLock { date += seconds } }
}

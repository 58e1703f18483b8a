import Foundation

extension Date {
    /// The time `unixMillis` milliseconds after the Unix epoch, as stored records and the wire count it.
    public init(unixMillis: Int64) { self.init(timeIntervalSince1970: TimeInterval(unixMillis) / 1000) }

    /// Milliseconds since the Unix epoch, to the nearest: a date made from milliseconds gives them back,
    /// which rounding down a binary fraction would not always do.
    public var unixMillis: Int64 { Int64((timeIntervalSince1970 * 1000).rounded()) }
}

extension Duration {
    /// Whole milliseconds, rounded down.
    public var milliseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }

    /// Whole nanoseconds, rounded down.
    public var nanoseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }

    /// Whole seconds, rounded down.
    public var wholeSeconds: Int64 { components.seconds }

    /// Seconds as a floating-point number, for `Date` arithmetic.
    public var timeInterval: TimeInterval { Double(nanoseconds) / 1e9 }
}

/// Where the current time comes from: the system's clock in the daemon, a clock a test moves in tests.
public typealias WallClock = @Sendable () -> Date

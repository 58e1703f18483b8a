import NIOCore
import Synchronization

/// The bytes of large frames cofferd holds at once, across every connection. A frame over `threshold`
/// reserves its length when its length prefix arrives; when the budget is spent, the frame is refused
/// instead of buffered. Without it each connection could make cofferd hold a few maximum-size frames, which
/// at the connection limit is gigabytes.
final class FrameBudget: Sendable {
    let limit: Int
    let threshold: Int
    private let used = Mutex(0)

    init(limit: Int, threshold: Int) {
        self.limit = limit
        self.threshold = threshold
    }

    /// Reserves `bytes` for a frame, or nil when the budget cannot hold it. Frames at or under the threshold
    /// need no reservation and always get one that holds nothing.
    func reserve(_ bytes: Int) -> FrameReservation? {
        guard bytes > threshold else { return FrameReservation.none }
        let granted = used.withLock { used in
            guard used + bytes <= limit else { return false }
            used += bytes
            return true
        }
        return granted ? FrameReservation(budget: self, bytes: bytes) : nil
    }

    fileprivate func release(_ bytes: Int) {
        used.withLock { $0 -= bytes }
    }

    /// Bytes reserved now.
    var inUse: Int { used.withLock { $0 } }
}

/// A frame's share of the budget, returned when the last reference to it goes: when the frame has been
/// handled, or dropped with its connection, wherever that happens.
final class FrameReservation: Sendable {
    private let budget: FrameBudget?
    private let bytes: Int

    /// What a small frame holds: nothing.
    static let none = FrameReservation(budget: nil, bytes: 0)

    fileprivate init(budget: FrameBudget?, bytes: Int) {
        self.budget = budget
        self.bytes = bytes
    }

    deinit {
        if bytes > 0 { budget?.release(bytes) }
    }
}

/// One frame's bytes, copied out at their exact size, with the reservation that accounts for them.
struct Frame: Sendable {
    var bytes: [UInt8]
    let reservation: FrameReservation
}

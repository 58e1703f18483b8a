import Synchronization

/// Gives out the audit trail's sequence numbers, one counter for every writer (the journal of reads and the
/// transactions of mutations), so that sequence order is the order in which records were taken.
final class AuditSequencer: Sendable {
    private let last: Mutex<UInt64>

    init(last: UInt64) { self.last = Mutex(last) }

    /// The next number.
    func next() -> UInt64 {
        last.withLock {
            $0 += 1
            return $0
        }
    }

    /// `count` consecutive numbers, the first of which is handed to `body`, which runs under the lock: nobody
    /// else takes a number until `body` has written what carries them. When it throws, the numbers are given
    /// back.
    func take<R, E: Error>(_ count: Int, _ body: (UInt64) throws(E) -> R) throws(E) -> R {
        try last.withLock { (last: inout UInt64) throws(E) -> R in
            let result = try body(last + 1)
            last += UInt64(count)
            return result
        }
    }

    /// Makes the next number follow `sequence` if it does not already.
    func raise(to sequence: UInt64) {
        last.withLock { $0 = max($0, sequence) }
    }

    /// The last number given out.
    var current: UInt64 { last.withLock { $0 } }
}

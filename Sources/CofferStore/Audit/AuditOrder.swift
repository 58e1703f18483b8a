import Synchronization

/// Where each audit record stands in line when it is taken: one counter for the journal (records of reads) and
/// the transactions of changes (whose records wait in the store), so that a fold merges the two in the order
/// they were taken. Not a sequence number: numbers a write that failed took are simply not used. The chain
/// gives each record its sequence when it joins it.
final class AuditOrder: Sendable {
    private let last = Mutex<UInt64>(0)

    /// The next place in line.
    func next() -> UInt64 { take(1) }

    /// `count` consecutive places; returns the first.
    func take(_ count: Int) -> UInt64 {
        last.withLock {
            $0 += UInt64(count)
            return $0 - UInt64(count) + 1
        }
    }

    /// Makes the next place follow `order` if it does not already.
    func raise(to order: UInt64) {
        last.withLock { $0 = max($0, order) }
    }
}

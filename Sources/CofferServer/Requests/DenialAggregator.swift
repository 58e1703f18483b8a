import CofferCore
import CofferStore
import NIOCore
import Synchronization

/// Counts the denials of callers that have not proven who they are (a forged or expired token, a malformed
/// frame on the worker socket): those of one uid, of one kind, within one interval share one audit record
/// with their count, so that a flood of them cannot push real records out of the trail. Their answers go out
/// when that record is written, at the interval's end, which also slows down a caller guessing tokens.
final class DenialAggregator: Sendable {
    private struct Key: Hashable {
        var socket: SocketRole
        var uid: UInt32
        var action: AuditAction
        var outcome: StatusCode
    }

    private final class Bucket: Sendable {
        let event: AuditEvent
        let count: Mutex<UInt32>
        /// Completed with nil once the record is written, or with why it could not be.
        let written: EventLoopPromise<CofferError?>

        init(event: AuditEvent, written: EventLoopPromise<CofferError?>) {
            self.event = event
            count = Mutex(1)
            self.written = written
        }
    }

    private let buckets = Mutex<[Key: Bucket]>([:])
    private let journal: AuditJournal
    let interval: Duration

    init(journal: AuditJournal, interval: Duration) {
        self.journal = journal
        self.interval = interval
    }

    /// Whether `event` is one to count rather than record alone: a denial on the worker socket before a token
    /// said who the caller is.
    static func counts(_ event: AuditEvent) -> Bool {
        event.socket == .worker && event.tokenID == nil && event.outcome != .ok
    }

    /// Counts `event`; the future completes on `loop` once its record is written (nil) or could not be.
    func add(_ event: AuditEvent, on loop: any EventLoop) -> EventLoopFuture<CofferError?> {
        let key = Key(socket: event.socket, uid: event.peerUID, action: event.action, outcome: event.outcome)
        let (bucket, created) = buckets.withLock { buckets -> (Bucket, Bool) in
            if let bucket = buckets[key] {
                bucket.count.withLock { $0 &+= 1 }
                return (bucket, false)
            }
            var first = event
            // The first request's connection speaks for none of the others.
            first.connection = nil
            let bucket = Bucket(event: first, written: loop.makePromise())
            buckets[key] = bucket
            return (bucket, true)
        }
        if created {
            loop.scheduleTask(in: TimeAmount.nanoseconds(interval.nanoseconds)) { self.write(key) }
        }
        return bucket.written.futureResult.hop(to: loop)
    }

    /// Writes every open count now: on shutdown.
    func writeAll() {
        let keys = buckets.withLock { Array($0.keys) }
        for key in keys { write(key) }
    }

    private func write(_ key: Key) {
        guard let bucket = buckets.withLock({ $0.removeValue(forKey: key) }) else { return }
        var event = bucket.event
        event.count = bucket.count.withLock { $0 }
        do throws(CofferError) {
            try journal.append([event])
            bucket.written.succeed(nil)
        } catch {
            bucket.written.succeed(error)
        }
    }
}

import CofferCore
import CofferCrypto
import Foundation

// A store in a cluster. A write transaction that records changes is run once to learn what it changes (and
// aborted), its batch is appended to the cluster's log with no LMDB transaction open, and only once the log has
// taken it are the same records committed to the store (the ledger of the first run, replayed). When the log
// has moved on, the store catches up and runs the transaction again. Batches other nodes wrote are applied in
// revision order, each checked against the link chain and each record against its tag, and recorded with the
// revision they reach in the same transaction.

/// The tables a cluster replicates; the audit trail and the metadata record are each node's own.
enum ReplicatedTable: String, CaseIterable, Sendable {
    case connections
    case grants
    case tokens
    case changes

    init?(_ table: String) {
        guard let authenticated = AuthenticatedTable(rawValue: table) else { return nil }
        switch authenticated {
        case .connections: self = .connections
        case .grants: self = .grants
        case .tokens: self = .tokens
        case .changes: self = .changes
        case .auditPending: return nil
        }
    }
}

/// What a store needs to be a node of a cluster.
struct ClusterMembership: Sendable {
    let log: any ReplicationLog
    let status: ReplicationStatus
    /// How long a write may wait for the log, from when it was queued.
    let writeDeadline: Duration
}

extension ConnectionStore {
    /// When this store last had everything the cluster's log held (a write of its own the log took, or a read
    /// of the log it applied to the end); nil if never.
    public var lastCaughtUp: Date? {
        let millis = currentMetadata.lastSyncUnixMs
        return millis == 0 ? nil : Date(unixMillis: millis)
    }

    /// Where this store stands in the cluster's log: the revision it reached and the link of the batch holding it.
    public var logPosition: LogPosition {
        metadata.withLock { LogPosition(revision: $0.revision, link: Array($0.logLink)) }
    }

    /// Makes this store a node of a cluster: from now on every write transaction that records changes is
    /// appended to `log` before it commits, within `writeDeadline` of being queued, and only while `status`
    /// allows writes.
    public func replicate(through log: any ReplicationLog, status: ReplicationStatus, writeDeadline: Duration) {
        cluster.withLock { $0 = ClusterMembership(log: log, status: status, writeDeadline: writeDeadline) }
    }

    /// Whether this store is a node of a cluster.
    public var isReplicated: Bool { cluster.withLock { $0 != nil } }

    /// The log entry of what `ledger` recorded, chained after `metadata`'s link; nil when it recorded no change.
    func replicationEntry(
        _ ledger: WriteLedger,
        after metadata: Coffer_Storage_V1_Metadata
    ) throws
        -> ReplicationEntry?
    {
        guard let first = ledger.events.first?.revision, let last = ledger.events.last?.revision else { return nil }
        var batch = Coffer_Storage_V1_ReplicatedBatch()
        batch.firstRevision = first
        batch.lastRevision = last
        var latest: [String: Int] = [:]
        for change in ledger.changes where ReplicatedTable(change.table) != nil {
            var record = Coffer_Storage_V1_ReplicatedRecord()
            record.table = change.table
            record.key = Data(change.key)
            record.stored = Data(change.stored ?? [])
            let id = change.table + "\u{0}" + change.key.map { String($0) }.joined(separator: ",")
            if let index = latest[id] {
                batch.records[index] = record
            } else {
                latest[id] = batch.records.count
                batch.records.append(record)
            }
        }
        let bytes: [UInt8] = try batch.serializedBytes()
        let link = keys.replicationLink(previous: Array(metadata.logLink), first: first, last: last, batch: bytes)
        return ReplicationEntry(first: first, last: last, batch: bytes, link: link)
    }

    // MARK: Writing through the log

    /// A write transaction of a cluster node. `body` runs once. A transaction that recorded a change is aborted,
    /// its batch appended to the log, and its ledger then committed. One that recorded none commits as on a
    /// single node, unless it `confirms`: a client's request answered from this node's state (a grant that was
    /// there already, a version that did not match) is answered only once a read of the log shows nothing newer
    /// than that state, the same way, with no LMDB transaction open meanwhile. Both wait at most the write
    /// deadline from `queued`, and neither is taken by a node that may not write.
    func writeReplicated<R>(
        _ cluster: ClusterMembership,
        usingReserve: Bool,
        confirming: Bool,
        since queued: ContinuousClock.Instant,
        _ body: (StoreWriter) throws -> R
    ) throws(CofferError) -> R {
        let deadline = queued + cluster.writeDeadline
        if confirming { try cluster.status.checkWriting() }
        while true {
            let ledger = WriteLedger()
            let before = currentMetadata
            var updated = before
            var entry: ReplicationEntry?
            var transactionID = 0
            let result: R
            do {
                result = try env.writeOrAbort { txn in
                    txn.authority = authority
                    txn.ledger = ledger
                    let result = try body(StoreWriter(store: self, txn: txn))
                    updated.apply(ledger)
                    entry = try replicationEntry(ledger, after: before)
                    if entry != nil || confirming {
                        guard ledger.audit == nil else {
                            throw CofferError(.internal, "a fold of the audit trail never shares a replicated write")
                        }
                        return (result, false)
                    }
                    try tables.meta.write(updated, keys: authority.keys, txn)
                    authority.committing(txn.snapshot + 1)
                    transactionID = txn.snapshot + 1
                    return (result, true)
                }
            } catch let error as LMDBError where error.kind == .mapFull {
                authority.committing(nil)
                guard grow(usingReserve: usingReserve) else { throw failure(error) }
                continue
            } catch {
                authority.committing(nil)
                throw failure(error)
            }
            if entry == nil && !confirming {
                committed(ledger, updated, transaction: transactionID)
                shrinkAfterReserve(usingReserve)
                return result
            }
            try cluster.status.checkWriting()
            let position = LogPosition(revision: before.revision, link: Array(before.logLink))
            guard let entry else {
                // Answered from this node's state: only if the log holds nothing newer.
                guard try confirm(position, cluster, until: deadline) else { continue }
                try commitReplayed(ledger, updated, usingReserve: usingReserve)
                return result
            }
            try checkTimeLeft(until: deadline, cluster)
            do {
                try LogDeadline.wait(deadline - .now, "a write", shown: cluster.writeDeadline) {
                    try await cluster.log.append(entry, after: position)
                }
            } catch let refusal as LogRefusal {
                if case .behind = refusal {
                    // Another node wrote first: take what it wrote, then run this transaction again on top of it.
                    try catchUp(cluster, until: deadline)
                    continue
                }
                throw stopFollowing(cluster, refusal.error)
            } catch {
                let error = failure(error)
                cluster.status.writeFailed(error.message)
                throw CofferError(
                    .unavailable,
                    "\(error.message); the write may have been taken by the cluster: read it back before repeating it",
                    cause: error
                )
            }
            updated.logLink = Data(entry.link)
            updated.lastSyncUnixMs = now.unixMillis
            try commitReplayed(ledger, updated, usingReserve: usingReserve)
            cluster.status.wrote(revision: entry.last)
            return result
        }
    }

    /// Whether the log ends where this node stood (`position`) when it answered from its state; false when it
    /// holds more, which the node has then applied (the transaction must run again).
    private func confirm(
        _ position: LogPosition,
        _ cluster: ClusterMembership,
        until deadline: ContinuousClock.Instant
    ) throws(CofferError) -> Bool {
        try checkTimeLeft(until: deadline, cluster)
        let slice: LogSlice
        do {
            slice = try LogDeadline.wait(deadline - .now, "a read", shown: cluster.writeDeadline) {
                try await cluster.log.read(after: position.revision, limit: 1)
            }
        } catch {
            let error = failure(error)
            cluster.status.writeFailed(error.message)
            throw error
        }
        let verdict = LogVerdict.of(node: position, slice: slice)
        if let failure = verdict.failure { throw stopFollowing(cluster, failure) }
        guard case .behind = verdict else { return true }
        try catchUp(cluster, until: deadline)
        return false
    }

    /// UNAVAILABLE when a write has waited out its deadline before it could reach the log (in line behind other
    /// writes, or catching up with other nodes'): nothing of it was sent, and the database is not to blame.
    private func checkTimeLeft(
        until deadline: ContinuousClock.Instant,
        _ cluster: ClusterMembership
    ) throws(CofferError) {
        guard deadline - .now <= .zero else { return }
        throw CofferError(
            .unavailable,
            "the write was not sent: it waited its whole deadline (\(LogDeadline.describe(cluster.writeDeadline))) behind other writes; try again"
        )
    }

    /// Commits what a first run of a transaction wrote (its ledger), now that the log has taken it.
    private func commitReplayed(
        _ ledger: WriteLedger,
        _ updated: Coffer_Storage_V1_Metadata,
        usingReserve: Bool
    ) throws(CofferError) {
        while true {
            do {
                let transaction = try env.write { txn in
                    for change in ledger.changes {
                        guard let db = tables.authenticated(change.table) else {
                            throw CofferError(.internal, "a write changed table \(change.table), which has no ledger")
                        }
                        if let stored = change.stored {
                            try txn.put(db, change.key, stored)
                        } else {
                            _ = try txn.delete(db, change.key)
                        }
                    }
                    try tables.meta.write(updated, keys: authority.keys, txn)
                    authority.committing(txn.snapshot + 1)
                    return txn.snapshot + 1
                }
                committed(ledger, updated, transaction: transaction)
                shrinkAfterReserve(usingReserve)
                return
            } catch let error as LMDBError where error.kind == .mapFull {
                authority.committing(nil)
                if grow(usingReserve: usingReserve) { continue }
                throw committedElsewhere(failure(error))
            } catch {
                authority.committing(nil)
                throw committedElsewhere(failure(error))
            }
        }
    }

    /// The log took a write that this store then could not commit: the node applies it from the log once it
    /// can; the client must not take the failure for a refusal.
    private func committedElsewhere(_ error: CofferError) -> CofferError {
        CofferError(
            .unavailable,
            "the cluster took this write, but this node could not store it yet (\(error.message)); it applies it from the cluster's log when it can",
            cause: error
        )
    }

    /// Catches up with the log until it holds nothing newer, or until `deadline`.
    private func catchUp(_ cluster: ClusterMembership, until deadline: ContinuousClock.Instant) throws(CofferError) {
        while true {
            let position = logPosition
            let started = now
            let slice: LogSlice
            try checkTimeLeft(until: deadline, cluster)
            do {
                slice = try LogDeadline.wait(deadline - .now, "a read", shown: cluster.writeDeadline) {
                    try await cluster.log.read(after: position.revision, limit: 512)
                }
            } catch {
                let error = failure(error)
                cluster.status.writeFailed(error.message)
                throw error
            }
            let verdict = LogVerdict.of(node: position, slice: slice)
            if let failure = verdict.failure { throw stopFollowing(cluster, failure) }
            guard case .behind(let entries) = verdict else { return }
            let reached: UInt64
            do {
                reached = try applyLocked(entries, readFrom: position, head: slice.head, readAt: started)
            } catch  where error.code == .dataLoss {
                throw stopFollowing(cluster, error)
            }
            cluster.status.wrote(revision: reached)
            if reached >= slice.head { return }
        }
    }

    /// The node met a log it cannot follow: it fails closed, and the client is told so.
    private func stopFollowing(_ cluster: ClusterMembership, _ error: CofferError) -> CofferError {
        cluster.status.fail(error.message)
        return CofferError(
            .unavailable,
            "this node stopped following the cluster's log and takes no writes until it is mended: \(error.message)"
        )
    }

    // MARK: Applying what other nodes wrote

    /// Applies `entries`, read from the log after `position` (where this store stood before the read), in one
    /// write transaction; returns the revision the store reaches. Entries this store holds already (its own
    /// writes, committed after `position` was taken) are skipped once their link matches. DATA_LOSS, naming what
    /// failed, for an entry that does not follow (a gap), fails its link (altered, injected or reordered) or
    /// holds a record that fails its tag: nothing of it is applied.
    /// `head` is the log's head that read saw, and `readAt` when the read began: when the store reaches the
    /// head, it had everything the log held then, which it keeps (`lastCaughtUp`).
    public func applyFromLog(
        _ entries: [ReplicationEntry],
        readFrom position: LogPosition,
        head: UInt64,
        readAt: Date
    ) throws(CofferError) -> UInt64 {
        writeLock.lock()
        defer { writeLock.unlock() }
        return try applyLocked(entries, readFrom: position, head: head, readAt: readAt)
    }

    private func applyLocked(
        _ entries: [ReplicationEntry],
        readFrom position: LogPosition,
        head: UInt64,
        readAt: Date
    ) throws(CofferError) -> UInt64 {
        let current = logPosition
        var pending = entries[...]
        if current.revision > position.revision {
            // This store wrote past where it stood when the log was read: those entries are its own.
            while let entry = pending.first, entry.last <= current.revision {
                if entry.last == current.revision, !ConstantTime.equals(entry.link, current.link) {
                    throw LogRefusal.diverged(at: current.revision).error
                }
                pending = pending.dropFirst()
            }
        }
        guard !pending.isEmpty else { return current.revision }
        try apply(Array(pending), caughtUp: pending.last.map { $0.last >= head } == true ? readAt : nil)
        return logPosition.revision
    }

    /// Applies `entries`, which must follow this store's revision, in one write transaction; `caughtUp` is when
    /// the store last had everything the log held, if these entries bring it there.
    private func apply(_ entries: [ReplicationEntry], caughtUp: Date?) throws(CofferError) {
        let ledger = WriteLedger()
        var updated = currentMetadata
        do {
            let transaction = try env.write { txn in
                txn.authority = authority
                txn.ledger = ledger
                var link = Array(updated.logLink)
                var revision = updated.revision
                var events: [ChangeEvent] = []
                for entry in entries {
                    let place = "revisions \(entry.first) to \(entry.last) of the cluster's log"
                    guard entry.first == revision + 1, entry.last >= entry.first else {
                        throw CofferError(
                            .dataLoss,
                            "the cluster's log goes from revision \(revision) to \(entry.first): a batch was removed or the log reordered"
                        )
                    }
                    let expected = keys.replicationLink(
                        previous: link,
                        first: entry.first,
                        last: entry.last,
                        batch: entry.batch
                    )
                    guard ConstantTime.equals(expected, entry.link) else {
                        throw CofferError(
                            .dataLoss,
                            "\(place) fail their link: the batch was altered, injected or replaced"
                        )
                    }
                    let batch: Coffer_Storage_V1_ReplicatedBatch
                    do { batch = try Coffer_Storage_V1_ReplicatedBatch(serializedBytes: entry.batch) } catch {
                        throw CofferError(.dataLoss, "\(place) are malformed")
                    }
                    guard batch.firstRevision == entry.first, batch.lastRevision == entry.last else {
                        throw CofferError(.dataLoss, "\(place) hold other revisions than they say")
                    }
                    for record in batch.records {
                        guard let table = ReplicatedTable(record.table), let db = tables.authenticated(table.rawValue)
                        else {
                            throw CofferError(.dataLoss, "\(place) name a table that is not replicated")
                        }
                        let key = Array(record.key)
                        if record.stored.isEmpty {
                            try txn.removeReplicated(db, key)
                        } else {
                            let payload = try txn.putReplicated(db, key, Array(record.stored))
                            if table == .changes {
                                events.append(try ChangeLog.event(key, payload))
                            }
                        }
                    }
                    link = entry.link
                    revision = entry.last
                }
                for event in events.sorted(by: { $0.revision < $1.revision }) { ledger.recordEvent(event) }
                updated.apply(ledger)
                updated.revision = revision
                updated.logLink = Data(link)
                if let caughtUp { updated.lastSyncUnixMs = caughtUp.unixMillis }
                let firstKept = try txn.bounds(tables.changes.db).map { StoreKeys.sequence(of: $0.first) }
                updated.changesFirst = firstKept ?? revision + 1
                try tables.meta.write(updated, keys: authority.keys, txn)
                authority.committing(txn.snapshot + 1)
                return txn.snapshot + 1
            }
            committed(ledger, updated, transaction: transaction)
        } catch {
            authority.committing(nil)
            throw failure(error)
        }
    }
}

extension Transaction {
    /// Stores a record another node wrote, as it stored it, once its tag verifies; returns its payload.
    func putReplicated(_ db: Database, _ key: [UInt8], _ stored: [UInt8]) throws -> [UInt8] {
        guard let authority, let ledger else { throw CofferError(.internal, "a replicated record needs a ledger") }
        let (payload, tag) = try authority.open(table: db.name, key: key, stored: stored)
        let old = try get(db, key).map { try authority.open(table: db.name, key: key, stored: $0).tag }
        try put(db, key, stored)
        ledger.record(table: db.name, key: key, old: old, new: tag, stored: stored, keys: authority.keys)
        return payload
    }

    /// Removes a record another node removed; nothing when this node has none (a token it purged already).
    func removeReplicated(_ db: Database, _ key: [UInt8]) throws {
        guard let authority, let ledger else { throw CofferError(.internal, "a replicated record needs a ledger") }
        guard let stored = try get(db, key) else { return }
        let old = try authority.open(table: db.name, key: key, stored: stored).tag
        try delete(db, key)
        ledger.record(table: db.name, key: key, old: old, new: nil, stored: nil, keys: authority.keys)
    }
}

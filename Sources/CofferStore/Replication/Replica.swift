import CofferCore
import CofferCrypto
import Foundation

// A store in a cluster: each write transaction that records changes is appended to the replication log before
// it commits (and is undone when the log has moved on: the store catches up and runs it again); batches other
// nodes wrote are applied in revision order, each checked against the link chain and each record against its
// tag, and recorded with the revision they reach in the same transaction.

/// The tables a cluster replicates; the audit trail and the metadata record are each node's own.
let replicatedTables: Set<String> = [
    AuthenticatedTable.connections.rawValue, AuthenticatedTable.grants.rawValue, AuthenticatedTable.tokens.rawValue,
    AuthenticatedTable.changes.rawValue,
]

extension ConnectionStore {
    /// When this store last wrote to the cluster's log or applied from it; nil if never.
    public var lastReplicated: Date? {
        let millis = currentMetadata.lastSyncUnixMs
        return millis == 0 ? nil : Date(unixMillis: millis)
    }

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
        for change in ledger.changes where replicatedTables.contains(change.table) {
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

    /// Applies the log's entries after this store's revision, up to `limit` of them, in one transaction;
    /// returns how many. DATA_LOSS, naming what failed, for an entry that does not follow (a gap), fails its
    /// link (altered, injected or reordered) or holds a record that fails its tag: nothing of it is applied.
    @discardableResult
    public func catchUp(from log: any ReplicationLog, limit: Int = 512) throws(CofferError) -> Int {
        writeLock.lock()
        defer { writeLock.unlock() }
        return try catchUpLocked(from: log, limit: limit)
    }

    func catchUpLocked(from log: any ReplicationLog, limit: Int) throws(CofferError) -> Int {
        let entries: [ReplicationEntry]
        do {
            entries = try log.entries(after: currentMetadata.revision, limit: limit)
        } catch {
            throw failure(error)
        }
        guard !entries.isEmpty else { return 0 }
        try apply(entries)
        return entries.count
    }

    /// Applies `entries`, which must follow this store's revision, in one write transaction.
    func apply(_ entries: [ReplicationEntry]) throws(CofferError) {
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
                        guard replicatedTables.contains(record.table), let db = tables.authenticated(record.table)
                        else {
                            throw CofferError(.dataLoss, "\(place) name a table that is not replicated")
                        }
                        let key = Array(record.key)
                        if record.stored.isEmpty {
                            try txn.removeReplicated(db, key)
                        } else {
                            let payload = try txn.putReplicated(db, key, Array(record.stored))
                            if record.table == AuthenticatedTable.changes.rawValue {
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
                updated.lastSyncUnixMs = now.unixMillis
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

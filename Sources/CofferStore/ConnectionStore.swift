import CofferCore
import CofferCrypto
import Foundation
import SwiftProtobuf
import Synchronization

/// What a process opens a store for.
public enum StoreAccess: Sendable {
    /// cofferd serving it, the only writer: verified at open, a format-1 store migrated, and every later read
    /// checked against the map of what it wrote.
    case serving
    /// A tool beside whoever serves it (`cofferd status`, `backup`): verified at open in one snapshot, and read
    /// as it is after that; it takes no write and keeps no map, so another process's writes are not alterations.
    case inspecting
    /// `cofferd verify`, which lists every problem itself: opened without checking anything.
    case unverified
}

/// The sealed connection store: connections, grants, workflow tokens and the audit trail in one LMDB
/// environment, each kept by its own table type, behind this one facade.
///
/// Every operation runs in exactly one transaction: `read` and `write` hand a `StoreReader` or `StoreWriter`
/// over one transaction to a closure, so that what must stay atomic (a put that clears stale grants, a
/// mutation and its audit record, a Get's token, grant and record) is. Every record is authenticated (see
/// `RecordAuthority`), every write transaction updates the store-wide summary in the metadata record, and
/// opening a store verifies all of it. Every method is synchronous and may block on the disk or on another
/// writer: call writes from a thread that may block, never from an event loop. Writes are durable when they
/// return (LMDB syncs on commit).
public final class ConnectionStore: Sendable {
    /// The layout this build writes; it also reads format 1, which it migrates.
    public static let formatVersion: UInt32 = MetadataTable.format

    public let configuration: StoreConfiguration

    let env: Environment
    let tables: Tables
    let authority: RecordAuthority
    /// Where each audit record stands in line, for the journal and the records of changes alike.
    let auditOrder = AuditOrder()
    private let failed = Mutex<CofferError?>(nil)
    /// Told, on the writer's thread, of the changes each write transaction committed, in revision order.
    // Not in a Mutex: a closure kept in a Mutex and read back is wrapped in one more reabstraction thunk each
    // time, so every commit's call went through as many thunks as there had been commits.
    private let listenerLock = NSLock()
    nonisolated(unsafe) private var changeListener: (@Sendable ([ChangeEvent]) -> Void)?
    /// The metadata record as the last commit left it; cofferd is its only writer.
    let metadata: Mutex<Coffer_Storage_V1_Metadata>
    /// Write transactions and the map of what they wrote change together.
    let writeLock = NSLock()
    /// In a cluster: the log every write transaction that records changes goes through before it commits.
    let cluster = Mutex<ClusterMembership?>(nil)

    /// The tables of one store.
    struct Tables: Sendable {
        let meta: MetadataTable
        let connections: ConnectionTable
        let grants: GrantTable
        let tokens: TokenTable
        let audit: AuditLog
        let changes: ChangeLog
    }

    /// The keys of every generation the store has; the active one's public key is what clients seal to.
    public var keys: KeyRing { authority.keys }

    private init(configuration: StoreConfiguration, keys: KeyRing) throws(CofferError) {
        self.configuration = configuration
        let directory = configuration.directory
        let env: Environment
        do {
            env = try Environment(directory: directory, mapSize: configuration.initialMapSize, maxDatabases: 8)
        } catch let error as LMDBError where error.kind == .alreadyOpen {
            throw CofferError(
                .failedPrecondition,
                "the store in \(directory) is already open in this process",
                cause: error
            )
        } catch {
            throw CofferError(.failedPrecondition, "cannot open the store in \(directory)", cause: error)
        }
        do {
            tables = Tables(
                meta: MetadataTable(db: try env.database("meta")),
                connections: ConnectionTable(db: try env.database(AuthenticatedTable.connections.rawValue)),
                grants: GrantTable(db: try env.database(AuthenticatedTable.grants.rawValue)),
                tokens: TokenTable(db: try env.database(AuthenticatedTable.tokens.rawValue)),
                audit: AuditLog(
                    db: try env.database("audit"),
                    pending: try env.database(AuthenticatedTable.auditPending.rawValue),
                    maxRecords: configuration.limits.maxAuditRecords
                ),
                changes: ChangeLog(db: try env.database(AuthenticatedTable.changes.rawValue))
            )
        } catch {
            env.close()
            throw Self.mapError(error, mapSize: configuration.mapSize)
        }
        self.env = env
        authority = RecordAuthority(keys: keys)
        metadata = Mutex(MetadataTable.fresh(keys: keys, now: configuration.clock()))
    }

    /// Creates a new store in `configuration.directory` for `keys`; refuses one that holds a store already.
    public static func create(_ configuration: StoreConfiguration, keys: KeyRing) throws(CofferError) -> ConnectionStore
    {
        let store = try ConnectionStore(configuration: configuration, keys: keys)
        do throws(CofferError) {
            let exists = try store.raw { txn in try store.tables.meta.read(keys: keys, txn) != nil }
            if exists {
                throw CofferError(
                    .alreadyExists,
                    "\(configuration.directory) already holds a Coffer store; it is never replaced"
                )
            }
            let fresh = MetadataTable.fresh(keys: keys, now: store.now)
            try store.raw(writing: true) { txn in try store.tables.meta.write(fresh, keys: keys, txn) }
            store.metadata.withLock { $0 = fresh }
            try StoreVerifier(store: store).verify()
        } catch {
            store.close()
            throw error
        }
        return store
    }

    /// Opens an existing store: refuses it when `keys` come from another master key or its format is unknown,
    /// and, unless `access` says otherwise, verifies every record, the summary and the audit chain in one
    /// snapshot (DATA_LOSS naming what failed). Only a store opened to serve migrates a store of format 1 and
    /// takes writes.
    public static func open(
        _ configuration: StoreConfiguration,
        keys: KeyRing,
        access: StoreAccess = .serving
    ) throws(CofferError) -> ConnectionStore {
        let store = try ConnectionStore(configuration: configuration, keys: keys)
        store.access = access
        let verifying = access != .unverified
        let directory = configuration.directory
        do throws(CofferError) {
            let stored = try store.raw { txn in try store.tables.meta.read(keys: keys, txn) }
            let record: Coffer_Storage_V1_Metadata
            switch stored {
            case nil:
                throw CofferError(
                    .failedPrecondition,
                    "\(directory) holds no Coffer store; create one with: cofferd init --data-dir \(directory)"
                )
            case .format1(let old)?:
                try store.checkKey(old, keys: keys)
                guard access == .serving else {
                    throw CofferError(
                        .failedPrecondition,
                        "the store in \(directory) has format 1, which predates its authentication; cofferd serve migrates it"
                    )
                }
                record = try FormatMigration(store: store).migrate(from: old)
            case .format2(let current)?:
                try store.checkKey(current, keys: keys)
                record = current
            }
            store.authority.keys = record.keyRing(from: keys)
            store.metadata.withLock { $0 = record }
            if verifying { try StoreVerifier(store: store).verify(keepingMap: access == .serving) }
        } catch {
            store.close()
            throw error
        }
        return store
    }

    /// Every problem a full verification finds: records that fail their tags, tables that do not match the
    /// summary, a broken audit chain, an altered journal. Each names the record or table, never a value.
    public func verificationProblems() throws(CofferError) -> [CofferError] {
        var problems = try StoreVerifier(store: self).problems()
        problems += AuditJournal.problems(
            in: configuration.directory,
            keys: keys,
            numbered: currentMetadata.journalNumbered
        )
        return problems
    }

    private func checkKey(_ record: Coffer_Storage_V1_Metadata, keys: KeyRing) throws(CofferError) {
        let storedID = KeyID(bytes: record.keyID).map(\.hex) ?? "(malformed)"
        guard keys.matchesKeyCheck(Array(record.keyCheck)) else {
            throw CofferError(
                .failedPrecondition,
                "the master key does not match the store in \(configuration.directory): the store was created with key \(storedID), the key given is \(keys.generations[1]?.keyID ?? keys.keyID)"
            )
        }
    }

    /// Closes the store after the transactions in flight end. Calls after it fail with UNAVAILABLE.
    public func close() { env.close() }

    deinit { env.close() }

    // MARK: Transactions

    /// Runs `body` in one read transaction. It never waits for a writer; it runs again, on a fresh snapshot,
    /// when a record it read changed after its snapshot. A `tolerant` read (a scan of metadata, never values)
    /// takes such a record's older copy instead, so that it finishes under a steady stream of writes.
    public func read<R>(tolerant: Bool = false, _ body: (StoreReader) throws -> R) throws(CofferError) -> R {
        for _ in 0..<32 {
            var snapshot = 0
            let bound = authority.beginRead()
            defer { authority.endRead(bound) }
            do {
                return try env.read { txn in
                    txn.authority = authority
                    txn.tolerant = tolerant
                    snapshot = txn.snapshot
                    return try body(StoreReader(store: self, txn: txn))
                }
            } catch {
                if mustRetry(error, snapshot: snapshot) { continue }
                throw failure(error)
            }
        }
        throw CofferError(.unavailable, "the store is changing faster than it can be read; try again")
    }

    /// Whether `error`, thrown by a read in `reader`, is its snapshot's and not the store's: the read must be
    /// rethrown out of `read`'s closure, which then runs again on a fresh snapshot. A closure that catches what
    /// its reads throw (to answer each of several requests) asks this first.
    public func mustRetry(_ error: any Error, in reader: StoreReader) -> Bool {
        mustRetry(error, snapshot: reader.txn.snapshot)
    }

    /// Only integrity failures can be a snapshot's: one older than cofferd's last commit may hold a record
    /// under a key generation retired since.
    private func mustRetry(_ error: any Error, snapshot: Int) -> Bool {
        if error is StaleSnapshot { return true }
        let integrity = error is RecordFailure || (error as? CofferError)?.code == .dataLoss
        return integrity && authority.isStale(snapshot)
    }

    /// What this process opened the store for; set once, before anyone else sees the store.
    nonisolated(unsafe) private(set) var access = StoreAccess.serving

    /// Runs `body` in one write transaction, which commits (with the metadata record updated) and syncs when it
    /// returns and is undone when it throws. When the map is full, it grows (up to `configuration.mapSize`, or
    /// by `configuration.reserve` beyond it when `usingReserve`, for writes that make room or take access away)
    /// and `body` runs again. In a cluster, a transaction that records changes commits only once the cluster's
    /// log has taken it, within the write deadline counted from `queued` (see `Replica.swift`).
    /// `confirming` marks a client's request: in a cluster, answered from this node's state only once the log
    /// shows nothing newer, and refused by a node that may not write.
    public func write<R>(
        usingReserve: Bool = false,
        confirming: Bool = false,
        queued: ContinuousClock.Instant? = nil,
        _ body: (StoreWriter) throws -> R
    ) throws(CofferError) -> R {
        guard access == .serving else {
            throw CofferError(.failedPrecondition, "the store was opened to be read, not written")
        }
        writeLock.lock()
        defer { writeLock.unlock() }
        if let cluster = cluster.withLock({ $0 }) {
            return try writeReplicated(
                cluster,
                usingReserve: usingReserve,
                confirming: confirming,
                since: queued ?? .now,
                body
            )
        }
        while true {
            let ledger = WriteLedger()
            var updated = currentMetadata
            do {
                let (result, transaction) = try env.write { txn in
                    txn.authority = authority
                    txn.ledger = ledger
                    let result = try body(StoreWriter(store: self, txn: txn))
                    updated.apply(ledger)
                    try tables.meta.write(updated, keys: authority.keys, txn)
                    authority.committing(txn.snapshot + 1)
                    return (result, txn.snapshot + 1)
                }
                committed(ledger, updated, transaction: transaction)
                shrinkAfterReserve(usingReserve)
                return result
            } catch let error as LMDBError where error.kind == .mapFull {
                authority.committing(nil)
                guard grow(usingReserve: usingReserve) else { throw failure(error) }
            } catch {
                authority.committing(nil)
                throw failure(error)
            }
        }
    }

    /// After a write that used the reserve: back to the limit, which LMDB raises to what the file now holds, so
    /// that other writes get no more room than the pages this one freed.
    func shrinkAfterReserve(_ usingReserve: Bool) {
        if usingReserve, env.mapSize > configuration.mapSize {
            try? env.resize(to: configuration.mapSize)
        }
    }

    /// After a write transaction committed: the metadata, the key ring, the map of what cofferd wrote, and the
    /// change listener.
    func committed(_ ledger: WriteLedger, _ updated: Coffer_Storage_V1_Metadata, transaction: Int) {
        let previous = metadata.withLock { current in
            defer { current = updated }
            return current
        }
        if previous.generations != updated.generations || previous.activeGeneration != updated.activeGeneration {
            // After the commit: a generation added is in the ring before anything is written under it, and one
            // retired leaves it only once nothing committed uses it.
            authority.keys = updated.keyRing(from: authority.keys)
        }
        authority.apply(ledger.changes, transaction: transaction)
        if !ledger.events.isEmpty, let listener = listenerLock.withLock({ changeListener }) { listener(ledger.events) }
    }

    /// A transaction without authentication, for start-up, migration and verification.
    func raw<R>(writing: Bool = false, _ body: (Transaction) throws -> R) throws(CofferError) -> R {
        do {
            return writing ? try env.write(body) : try env.read(body)
        } catch {
            throw failure(error)
        }
    }

    /// Calls `listener` after every commit that recorded changes, with them, on the writer's thread: keep it
    /// short (hand them to where they are wanted).
    public func onChanges(_ listener: @escaping @Sendable ([ChangeEvent]) -> Void) {
        listenerLock.withLock { changeListener = listener }
    }

    /// The revision of the newest committed change.
    public var revision: UInt64 { currentMetadata.revision }

    /// The metadata record as the last commit left it.
    var currentMetadata: Coffer_Storage_V1_Metadata { metadata.withLock { $0 } }

    /// Takes the metadata record `txn` holds as the current one (with its key generations), for a verification
    /// that must compare each table with the summary of the same snapshot. Only before the store serves.
    func adoptMetadata(in txn: Transaction) throws -> Coffer_Storage_V1_Metadata {
        guard case .format2(let record)? = try tables.meta.read(keys: authority.keys, txn) else {
            return currentMetadata
        }
        authority.keys = record.keyRing(from: authority.keys)
        metadata.withLock { $0 = record }
        return record
    }

    /// Whether records of changes wait to be folded into the audit chain.
    var hasPendingAudit: Bool {
        currentMetadata.summaries.contains { $0.table == AuthenticatedTable.auditPending.rawValue && $0.count > 0 }
    }

    /// Grows the map toward its limit; false when it is there already.
    func grow(usingReserve: Bool) -> Bool {
        let limit = configuration.mapSize + (usingReserve ? configuration.reserve : 0)
        let current = env.mapSize
        guard current < limit else { return false }
        do {
            try env.resize(to: min(limit, max(current * 2, current + (1 << 20))))
            return env.mapSize > current
        } catch {
            return false
        }
    }

    var now: Date { configuration.clock() }

    /// Why the store has failed (the disk failed a read or a write), or nil while it serves. Once failed,
    /// cofferd reports itself not serving; a restart (after the disk is mended) clears it.
    public var failure: CofferError? { failed.withLock { $0 } }

    /// Remembers that the disk holding the store failed (a write of the journal beside it, say), so that cofferd
    /// reports itself not serving.
    func markFailed(_ error: CofferError) {
        failed.withLock { $0 = $0 ?? error }
    }

    /// What an error thrown inside `read` or `write` means to a client; a failure of the disk is remembered
    /// (see `failure`).
    public func failure(_ error: any Error) -> CofferError {
        let mapped = Self.mapError(error, mapSize: configuration.mapSize)
        if let error = error as? LMDBError, error.kind == .io {
            failed.withLock { $0 = $0 ?? mapped }
        }
        return mapped
    }

    /// The one place where lower-level failures become `CofferError`s; their detail stays in `cause`.
    static func mapError(_ error: any Error, mapSize: Int) -> CofferError {
        switch error {
        case let error as CofferError:
            return error
        case let error as RecordFailure:
            return error.error
        case let error as LMDBError:
            switch error.kind {
            case .mapFull:
                return CofferError(
                    .resourceExhausted,
                    "the store is full: its map size of \(mapSize >> 20) MiB is used up; restart cofferd with a larger --map-size",
                    cause: error
                )
            case .diskFull:
                return CofferError(.resourceExhausted, "the disk holding the store is full", cause: error)
            case .io:
                return CofferError(.unavailable, "the disk holding the store failed a read or a write", cause: error)
            case .corrupted:
                return CofferError(.dataLoss, "the store's file is damaged", cause: error)
            case .closed:
                return CofferError(.unavailable, "the store is closed", cause: error)
            case .alreadyOpen, .other:
                return CofferError(.internal, "storage error", cause: error)
            }
        case is SwiftProtobufError, is BinaryDecodingError:
            return CofferError(.dataLoss, "a stored record is malformed", cause: error)
        default:
            return CofferError(.internal, "storage error", cause: error)
        }
    }
}

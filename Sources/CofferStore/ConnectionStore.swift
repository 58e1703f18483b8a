import CofferCore
import CofferCrypto
import Foundation
import SwiftProtobuf
import Synchronization

/// The sealed connection store: connections, grants, workflow tokens and the audit trail in one LMDB
/// environment, each kept by its own table type, behind this one facade.
///
/// Every operation runs in exactly one transaction: `read` and `write` hand a `StoreReader` or `StoreWriter`
/// over one transaction to a closure, so that what must stay atomic (a put that clears stale grants, a
/// mutation and its audit record, a Get's token, grant and record) is. The single-operation methods below are
/// conveniences over them. Every method is synchronous and may block on the disk or on another writer: call
/// writes from a thread that may block, never from an event loop. Writes are durable when they return (LMDB
/// syncs on commit).
public final class ConnectionStore: Sendable {
    /// The layout this build reads and writes.
    public static let formatVersion: UInt32 = 1

    /// The keys derived from the master key; the public key is what clients seal to.
    public let keys: KeyRing
    public let configuration: StoreConfiguration

    let env: Environment
    let tables: Tables
    let sequencer: AuditSequencer
    private let failed = Mutex<CofferError?>(nil)

    /// The tables of one store.
    struct Tables: Sendable {
        let meta: MetadataTable
        let connections: ConnectionTable
        let grants: GrantTable
        let tokens: TokenTable
        let audit: AuditLog
    }

    private init(configuration: StoreConfiguration, keys: KeyRing) throws(CofferError) {
        self.configuration = configuration
        self.keys = keys
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
                connections: ConnectionTable(db: try env.database("connections")),
                grants: GrantTable(db: try env.database("grants")),
                tokens: TokenTable(db: try env.database("tokens")),
                audit: AuditLog(db: try env.database("audit"), maxRecords: configuration.limits.maxAuditRecords)
            )
            let tables = self.tables
            sequencer = AuditSequencer(last: try env.read { txn in try tables.audit.lastSequence(txn) })
        } catch {
            env.close()
            throw Self.mapError(error, mapSize: configuration.mapSize)
        }
        self.env = env
    }

    /// Creates a new store in `configuration.directory` for `keys`; refuses one that holds a store already.
    public static func create(
        _ configuration: StoreConfiguration,
        keys: KeyRing
    ) throws(CofferError)
        -> ConnectionStore
    {
        let store = try ConnectionStore(configuration: configuration, keys: keys)
        do throws(CofferError) {
            try store.write { writer in
                try store.tables.meta.create(format: formatVersion, keys: keys, now: writer.now, writer.txn)
            }
        } catch {
            store.close()
            if error.code == .alreadyExists {
                throw CofferError(
                    .alreadyExists,
                    "\(configuration.directory) already holds a Coffer store; it is never replaced"
                )
            }
            throw error
        }
        return store
    }

    /// Opens an existing store, refusing it when `keys` come from another master key or its format is unknown.
    public static func open(
        _ configuration: StoreConfiguration,
        keys: KeyRing
    ) throws(CofferError)
        -> ConnectionStore
    {
        let store = try ConnectionStore(configuration: configuration, keys: keys)
        let directory = configuration.directory
        do throws(CofferError) {
            let record = try store.read { reader in try store.tables.meta.read(reader.txn) }
            guard let record else {
                throw CofferError(
                    .failedPrecondition,
                    "\(directory) holds no Coffer store; create one with: cofferd init --data-dir \(directory)"
                )
            }
            guard record.formatVersion == formatVersion else {
                throw CofferError(
                    .failedPrecondition,
                    "the store in \(directory) has format version \(record.formatVersion); this cofferd reads version \(formatVersion)"
                )
            }
            let storedID = KeyID(bytes: record.keyID).map(\.hex) ?? "(malformed)"
            guard record.keyID == Data(keys.keyID.bytes), keys.matchesKeyCheck(Array(record.keyCheck)) else {
                throw CofferError(
                    .failedPrecondition,
                    "the master key does not match the store in \(directory): the store was created with key \(storedID), the key given is \(keys.keyID)"
                )
            }
        } catch {
            store.close()
            throw error
        }
        return store
    }

    /// Closes the store after the transactions in flight end. Calls after it fail with UNAVAILABLE.
    public func close() { env.close() }

    deinit { env.close() }

    // MARK: Transactions

    /// Runs `body` in one read transaction. It never waits for a writer.
    public func read<R>(_ body: (StoreReader) throws -> R) throws(CofferError) -> R {
        do {
            return try env.read { txn in try body(StoreReader(store: self, txn: txn)) }
        } catch {
            throw failure(error)
        }
    }

    /// Runs `body` in one write transaction, which commits and syncs when it returns and is undone when it
    /// throws. When the map is full, it grows (up to `configuration.mapSize`, or by `configuration.reserve`
    /// beyond it when `usingReserve`, for writes that make room or take access away) and `body` runs again.
    public func write<R>(usingReserve: Bool = false, _ body: (StoreWriter) throws -> R) throws(CofferError) -> R {
        while true {
            do {
                let result = try env.write { txn in try body(StoreWriter(store: self, txn: txn)) }
                if usingReserve, env.mapSize > configuration.mapSize {
                    // Back to the limit, which LMDB raises to what the file now holds: other writes get no
                    // more room than the pages this one freed.
                    try? env.resize(to: configuration.mapSize)
                }
                return result
            } catch let error as LMDBError where error.kind == .mapFull {
                guard grow(usingReserve: usingReserve) else { throw failure(error) }
            } catch {
                throw failure(error)
            }
        }
    }

    /// Grows the map toward its limit; false when it is there already.
    private func grow(usingReserve: Bool) -> Bool {
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

    var now: Date { configuration.clock() }

    /// The one place where lower-level failures become `CofferError`s; their detail stays in `cause`.
    static func mapError(_ error: any Error, mapSize: Int) -> CofferError {
        switch error {
        case let error as CofferError:
            return error
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

import CofferCore
import Foundation

/// Grants under `type/name` NUL `workflow`. When a connection is deleted its grants become tombstones: they
/// authorise nothing and are not listed, but let cofferd tell those workflows NOT_FOUND rather than
/// PERMISSION_DENIED. A put of the same name removes them, so a new connection starts ungranted.
struct GrantTable {
    let db: Database

    enum State: Equatable {
        case none
        case active
        case connectionDeleted
    }

    func state(_ ref: ConnectionRef, _ workflow: WorkflowName, _ txn: Transaction) throws -> State {
        guard let bytes = try txn.record(db, StoreKeys.grant(ref, workflow)) else { return .none }
        return try Coffer_Storage_V1_GrantRecord(serializedBytes: bytes).connectionDeletedUnixMs == 0
            ? .active : .connectionDeleted
    }

    /// Grants `ref` to `workflow`; false when the grant was there already.
    func grant(_ ref: ConnectionRef, _ workflow: WorkflowName, now: Date, _ txn: Transaction) throws -> Bool {
        guard try state(ref, workflow, txn) != .active else { return false }
        var record = Coffer_Storage_V1_GrantRecord()
        record.createdUnixMs = now.unixMillis
        try txn.putRecord(db, StoreKeys.grant(ref, workflow), try record.serializedBytes())
        return true
    }

    /// Removes a grant (or its tombstone); false when there was none.
    func revoke(_ ref: ConnectionRef, _ workflow: WorkflowName, _ txn: Transaction) throws -> Bool {
        try txn.deleteRecord(db, StoreKeys.grant(ref, workflow))
    }

    /// Turns a deleted connection's grants into tombstones.
    func markDeleted(_ ref: ConnectionRef, now: Date, _ txn: Transaction) throws {
        for (key, var record) in try entries(ref, txn) where record.connectionDeletedUnixMs == 0 {
            record.connectionDeletedUnixMs = now.unixMillis
            try txn.putRecord(db, key, try record.serializedBytes())
        }
    }

    /// Removes every grant and tombstone of `ref`.
    func clear(_ ref: ConnectionRef, _ txn: Transaction) throws {
        for (key, _) in try entries(ref, txn) { try txn.deleteRecord(db, key) }
    }

    /// The workflows holding a live grant for `ref`, sorted.
    func active(_ ref: ConnectionRef, _ txn: Transaction) throws -> [WorkflowName] {
        try entries(ref, txn)
            .filter { $0.1.connectionDeletedUnixMs == 0 }
            .map { try StoreKeys.parseGrant($0.0).1 }
            .sorted()
    }

    /// Every live grant, by connection.
    func activeByConnection(_ txn: Transaction) throws -> [ConnectionRef: [WorkflowName]] {
        var result: [ConnectionRef: [WorkflowName]] = [:]
        try txn.scanRecords(db) { key, value in
            if try Coffer_Storage_V1_GrantRecord(serializedBytes: value).connectionDeletedUnixMs == 0 {
                let (ref, workflow) = try StoreKeys.parseGrant(key)
                result[ref, default: []].append(workflow)
            }
            return true
        }
        return result
    }

    private func entries(
        _ ref: ConnectionRef,
        _ txn: Transaction
    ) throws
        -> [([UInt8], Coffer_Storage_V1_GrantRecord)]
    {
        var entries: [([UInt8], Coffer_Storage_V1_GrantRecord)] = []
        try txn.scanRecords(db, prefix: StoreKeys.grantPrefix(ref)) { key, value in
            entries.append((key, try Coffer_Storage_V1_GrantRecord(serializedBytes: value)))
            return true
        }
        return entries
    }
}

import CofferCore
import Foundation

/// The change feed: every committed change, under its revision, in the transaction that made it. Revisions
/// are gapless (each takes the next after the metadata record's `revision`, which nested transactions undo
/// with their changes); the oldest records are dropped past `StoreLimits.maxChangeRecords`.
struct ChangeLog {
    let db: Database

    func append(_ event: ChangeEvent, _ txn: Transaction) throws {
        var record = Coffer_Storage_V1_ChangeRecord()
        record.revision = event.revision
        record.timeUnixMs = event.time.unixMillis
        record.kind = Self.wire(event.kind)
        record.connection = event.connection?.description ?? ""
        record.workflow = event.workflow?.rawValue ?? ""
        record.tokenID = event.tokenID?.rawValue ?? ""
        record.version = event.version
        try txn.putRecord(db, StoreKeys.sequence(event.revision), try record.serializedBytes())
    }

    func remove(_ revision: UInt64, _ txn: Transaction) throws {
        _ = try txn.deleteRecord(db, StoreKeys.sequence(revision))
    }

    /// The changes after `revision`, oldest first, at most `limit`.
    func after(_ revision: UInt64, limit: Int, _ txn: Transaction) throws -> [ChangeEvent] {
        var events: [ChangeEvent] = []
        guard limit > 0, revision < UInt64.max else { return events }
        try txn.scanRecords(db, from: StoreKeys.sequence(revision &+ 1)) { key, payload in
            events.append(try Self.event(key, payload))
            return events.count < limit
        }
        return events
    }

    static func event(_ key: [UInt8], _ payload: [UInt8]) throws -> ChangeEvent {
        let record = try Coffer_Storage_V1_ChangeRecord(serializedBytes: payload)
        guard record.revision == StoreKeys.sequence(of: key), let kind = kind(record.kind) else {
            throw CofferError(.dataLoss, "change \(StoreKeys.sequence(of: key)) is malformed")
        }
        do {
            return ChangeEvent(
                revision: record.revision,
                time: Date(unixMillis: record.timeUnixMs),
                kind: kind,
                connection: record.connection.isEmpty ? nil : try ConnectionRef(parsing: record.connection),
                workflow: record.workflow.isEmpty ? nil : try WorkflowName(record.workflow),
                tokenID: record.tokenID.isEmpty ? nil : try TokenID(record.tokenID),
                version: record.version
            )
        } catch {
            throw CofferError(.dataLoss, "change \(record.revision) names something malformed", cause: error)
        }
    }

    static func wire(_ kind: ChangeEvent.Kind) -> Coffer_Storage_V1_ChangeKind {
        switch kind {
        case .connectionCreated: .connectionCreated
        case .connectionChanged: .connectionChanged
        case .connectionDeleted: .connectionDeleted
        case .grantAdded: .grantAdded
        case .grantRevoked: .grantRevoked
        case .tokenIssued: .tokenIssued
        case .tokenRevoked: .tokenRevoked
        }
    }

    static func kind(_ wire: Coffer_Storage_V1_ChangeKind) -> ChangeEvent.Kind? {
        switch wire {
        case .connectionCreated: .connectionCreated
        case .connectionChanged: .connectionChanged
        case .connectionDeleted: .connectionDeleted
        case .grantAdded: .grantAdded
        case .grantRevoked: .grantRevoked
        case .tokenIssued: .tokenIssued
        case .tokenRevoked: .tokenRevoked
        case .unspecified, .UNRECOGNIZED: nil
        }
    }
}

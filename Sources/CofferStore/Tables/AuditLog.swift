import CofferCore
import Foundation

/// The audit trail: records under their sequence number, oldest first, at most `maxRecords` of them (the
/// oldest are dropped). Sequence numbers are given out by whoever writes (see `AuditSequencer`), so a
/// record's place does not depend on which transaction carries it.
struct AuditLog {
    let db: Database
    let maxRecords: Int

    /// Stores `event` under its sequence number, then drops the oldest records past the limit.
    func insert(_ event: AuditEvent, _ txn: Transaction) throws {
        precondition(event.sequence > 0, "an audit record is stored under its sequence number")
        try txn.put(db, StoreKeys.sequence(event.sequence), try Self.entry(event).serializedBytes())
        try trim(txn)
    }

    /// The newest record's sequence number; 0 when the trail is empty.
    func lastSequence(_ txn: Transaction) throws -> UInt64 {
        try txn.bounds(db).map { StoreKeys.sequence(of: $0.last) } ?? 0
    }

    /// Whether a record with this sequence number is stored.
    func contains(_ sequence: UInt64, _ txn: Transaction) throws -> Bool {
        try txn.get(db, StoreKeys.sequence(sequence)) != nil
    }

    /// Records after `sequence`, oldest first, at most `limit`, and where the trail ended.
    func page(after sequence: UInt64, limit: Int, _ txn: Transaction) throws -> AuditPage {
        var records: [AuditEvent] = []
        let last = try lastSequence(txn)
        if limit > 0 {
            try txn.scan(db, from: StoreKeys.sequence(sequence &+ 1)) { key, value in
                let entry = try Coffer_Storage_V1_AuditEntry(serializedBytes: value)
                records.append(try Self.event(StoreKeys.sequence(of: key), entry))
                return records.count < limit
            }
        }
        return AuditPage(records: records, lastSequence: last)
    }

    func count(_ txn: Transaction) throws -> Int {
        var count = 0
        try txn.scan(db) { _, _ in
            count += 1
            return count <= maxRecords
        }
        return count
    }

    private func trim(_ txn: Transaction) throws {
        guard let bounds = try txn.bounds(db) else { return }
        var oldest = StoreKeys.sequence(of: bounds.first)
        let newest = StoreKeys.sequence(of: bounds.last)
        // Sequence numbers may have gaps (a number given to a write that failed), so the bound is on
        // numbers, which never counts fewer records than are kept.
        while newest - oldest + 1 > UInt64(maxRecords) {
            try txn.delete(db, StoreKeys.sequence(oldest))
            oldest += 1
        }
    }

    static func entry(_ event: AuditEvent) -> Coffer_Storage_V1_AuditEntry {
        var entry = Coffer_Storage_V1_AuditEntry()
        entry.timeUnixMs = event.time.unixMillis
        entry.socket = event.socket.rawValue
        entry.operation = event.action.name
        entry.connection = event.connection?.description ?? ""
        entry.workflow = event.workflow?.rawValue ?? ""
        entry.tokenID = event.tokenID?.rawValue ?? ""
        entry.runID = event.runID?.rawValue ?? ""
        entry.peerUid = event.peerUID
        entry.peerPid = event.peerPID
        entry.outcome = Int32(event.outcome.rawValue)
        entry.count = event.count
        return entry
    }

    static func event(_ sequence: UInt64, _ entry: Coffer_Storage_V1_AuditEntry) throws(CofferError) -> AuditEvent {
        do {
            guard let socket = SocketRole(rawValue: entry.socket), let action = AuditAction(name: entry.operation),
                let outcome = StatusCode(rawValue: Int(entry.outcome))
            else { throw CofferError(.dataLoss, "malformed") }
            var event = AuditEvent(
                time: Date(unixMillis: entry.timeUnixMs),
                socket: socket,
                action: action,
                peerUID: entry.peerUid,
                peerPID: entry.peerPid
            )
            event.sequence = sequence
            event.connection = entry.connection.isEmpty ? nil : try ConnectionRef(parsing: entry.connection)
            event.workflow = entry.workflow.isEmpty ? nil : try WorkflowName(entry.workflow)
            event.tokenID = entry.tokenID.isEmpty ? nil : try TokenID(entry.tokenID)
            event.runID = entry.runID.isEmpty ? nil : try RunID(entry.runID)
            event.outcome = outcome
            event.count = max(entry.count, 1)
            return event
        } catch {
            throw CofferError(.dataLoss, "audit record \(sequence) is malformed", cause: error)
        }
    }
}

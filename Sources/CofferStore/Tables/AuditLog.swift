import CofferCore
import CofferCrypto
import Foundation

/// Where the audit chain stands: its newest record and that record's link, and the link before its oldest
/// kept record. Kept in the metadata record, which the summary's tag covers.
struct AuditChain: Equatable {
    var headSequence: UInt64 = 0
    var headLink: [UInt8] = KeyRing.firstAuditLink
    var startLink: [UInt8] = KeyRing.firstAuditLink
    var count: UInt64 = 0
}

/// The audit trail: a keyed hash chain of records under their sequence numbers, oldest first, at most
/// `maxRecords` of them (the oldest are dropped, and the chain's start moves with them).
///
/// Records reach the chain only in sequence order, in a fold: the records of changes wait in `pending` (an
/// authenticated table, written in each change's own transaction), the records of everything else in the
/// journal, and a fold moves both into the chain. A record's link covers the link before it, so an edited,
/// removed or reordered record breaks the chain, and a cut-off end no longer meets the head the metadata holds.
struct AuditLog {
    let db: Database
    let pending: Database
    let maxRecords: Int

    /// Bytes after each record: its link.
    static let linkLength = KeyRing.tagLength

    /// Writes a change's record to wait for the next fold, in the change's transaction.
    func appendPending(_ event: AuditEvent, _ txn: Transaction) throws {
        precondition(event.sequence > 0, "an audit record is stored under its sequence number")
        try txn.putRecord(pending, StoreKeys.sequence(event.sequence), try Self.entry(event).serializedBytes())
    }

    /// The waiting records of changes, in sequence order.
    func pendingRecords(_ txn: Transaction) throws -> [AuditEvent] {
        var events: [AuditEvent] = []
        try txn.scanRecords(pending) { key, value in
            events.append(
                try Self.event(StoreKeys.sequence(of: key), try Coffer_Storage_V1_AuditEntry(serializedBytes: value))
            )
            return true
        }
        return events
    }

    /// The highest sequence number in the chain or waiting.
    func lastSequence(_ chain: AuditChain, _ txn: Transaction) throws -> UInt64 {
        let waiting = try txn.bounds(pending).map { StoreKeys.sequence(of: $0.last) } ?? 0
        return max(chain.headSequence, waiting)
    }

    /// Moves `journaled` and every waiting record of a change into the chain, in sequence order, then drops
    /// the oldest records past the limit. Records already in the chain (a fold repeated after a crash) are
    /// skipped. Returns where the chain now stands.
    func fold(_ journaled: [AuditEvent], chain: AuditChain, keys: KeyRing, _ txn: Transaction) throws -> AuditChain {
        let waiting = try pendingRecords(txn)
        for event in waiting { try txn.deleteRecord(pending, StoreKeys.sequence(event.sequence)) }
        var chain = chain
        for event in (journaled + waiting).sorted(by: { $0.sequence < $1.sequence })
        where event.sequence > chain.headSequence {
            let entry: [UInt8] = try Self.entry(event).serializedBytes()
            let link = keys.auditLink(previous: chain.headLink, sequence: event.sequence, entry: entry[...])
            try txn.put(db, StoreKeys.sequence(event.sequence), entry + link)
            chain.headSequence = event.sequence
            chain.headLink = link
            chain.count += 1
        }
        return try trim(chain, txn)
    }

    /// Drops the oldest records past the limit; the link of the last one dropped becomes the chain's start.
    private func trim(_ chain: AuditChain, _ txn: Transaction) throws -> AuditChain {
        var chain = chain
        var excess = Int(chain.count) - maxRecords
        guard excess > 0 else { return chain }
        var dropped: [([UInt8], [UInt8])] = []
        try txn.scan(db) { key, value in
            dropped.append((key, value))
            excess -= 1
            return excess > 0
        }
        for (key, value) in dropped {
            try txn.delete(db, key)
            chain.startLink = Array(value.suffix(Self.linkLength))
            chain.count -= 1
        }
        return chain
    }

    /// Records after `sequence`, oldest first, at most `limit`, and where the chain ended.
    func page(after sequence: UInt64, limit: Int, chain: AuditChain, _ txn: Transaction) throws -> AuditPage {
        var records: [AuditEvent] = []
        if limit > 0 {
            try txn.scan(db, from: StoreKeys.sequence(sequence &+ 1)) { key, value in
                let entry = try Coffer_Storage_V1_AuditEntry(serializedBytes: Array(value.dropLast(Self.linkLength)))
                records.append(try Self.event(StoreKeys.sequence(of: key), entry))
                return records.count < limit
            }
        }
        return AuditPage(records: records, lastSequence: chain.headSequence)
    }

    func count(_ txn: Transaction) throws -> Int {
        var count = 0
        try txn.scan(db) { _, _ in
            count += 1
            return true
        }
        return count
    }

    /// Walks the whole chain and names the first record that breaks it.
    func verify(_ chain: AuditChain, keys: KeyRing, _ txn: Transaction) throws(CofferError) {
        var previous = chain.startLink
        var last: UInt64 = 0
        var count: UInt64 = 0
        do {
            try txn.scan(db) { key, value in
                let sequence = StoreKeys.sequence(of: key)
                guard key.count == 8, value.count > Self.linkLength, sequence > last else {
                    throw CofferError(
                        .dataLoss,
                        "audit record \(sequence) is malformed or out of order: the store was altered"
                    )
                }
                let entry = value.dropLast(Self.linkLength)
                let link = Array(value.suffix(Self.linkLength))
                guard ConstantTime.equals(link, keys.auditLink(previous: previous, sequence: sequence, entry: entry))
                else {
                    throw CofferError(
                        .dataLoss,
                        "audit record \(sequence) does not follow the one before it in the audit chain: a record was altered or removed"
                    )
                }
                previous = link
                last = sequence
                count += 1
                return true
            }
        } catch let error as CofferError {
            throw error
        } catch {
            throw CofferError(.dataLoss, "the audit trail cannot be read", cause: error)
        }
        guard count == chain.count, last == chain.headSequence || count == 0,
            ConstantTime.equals(previous, chain.headLink)
        else {
            throw CofferError(
                .dataLoss,
                "the audit chain ends at record \(last), not at record \(chain.headSequence) where the store says it ends: records were cut off"
            )
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

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
    /// Records after this sequence follow one another without gaps; `.max` in a store from before that held.
    var gaplessAfter: UInt64 = 0
}

/// The audit trail: a keyed hash chain of records under their sequence numbers, oldest first, at most
/// `maxRecords` of them (the oldest are dropped, and the chain's start moves with them).
///
/// Records reach the chain only in a fold, which gives them their sequence numbers, one after another: the
/// records of changes wait in `pending` (an authenticated table, written in each change's own transaction,
/// under their place in line), the records of everything else in the journal, and a fold moves both into the
/// chain in one transaction. A record's link covers the link before it, so an edited, removed or reordered
/// record breaks the chain, a removed one leaves a gap in the numbers, and a cut-off end no longer meets the head
/// the metadata holds.
struct AuditLog {
    let db: Database
    let pending: Database
    let maxRecords: Int

    /// Bytes after each record: its link.
    static let linkLength = KeyRing.tagLength

    /// Writes a change's record to wait for the next fold, in the change's transaction, under its place in line.
    func appendPending(_ event: AuditEvent, order: UInt64, _ txn: Transaction) throws {
        try txn.putRecord(pending, StoreKeys.sequence(order), try Self.entry(event).serializedBytes())
    }

    /// The waiting records of changes, in line.
    func pendingRecords(_ txn: Transaction) throws -> [(order: UInt64, event: AuditEvent)] {
        var events: [(UInt64, AuditEvent)] = []
        try txn.scanRecords(pending) { key, value in
            let order = StoreKeys.sequence(of: key)
            events.append((order, try Self.event(order, try Coffer_Storage_V1_AuditEntry(serializedBytes: value))))
            return true
        }
        return events
    }

    /// Moves `journaled` (in journal order) and the waiting records of changes up to `pendingThrough` into the
    /// chain, the two merged in the order they were taken, numbering them from the chain's head on, then drops the oldest records past
    /// the limit. Returns where the chain now stands.
    func fold(
        _ journaled: [(order: UInt64, event: AuditEvent)],
        pendingThrough: UInt64 = .max,
        chain: AuditChain,
        keys: KeyRing,
        _ txn: Transaction
    ) throws -> AuditChain {
        let waiting = try pendingRecords(txn).filter { $0.order <= pendingThrough }
        for (order, _) in waiting { try txn.deleteRecord(pending, StoreKeys.sequence(order)) }
        var chain = chain
        for var event in Self.merged(journaled, waiting) {
            event.sequence = chain.headSequence + 1
            let entry: [UInt8] = try Self.entry(event).serializedBytes()
            let link = keys.auditLink(previous: chain.headLink, sequence: event.sequence, entry: entry[...])
            try txn.put(db, StoreKeys.sequence(event.sequence), entry + link)
            chain.headSequence = event.sequence
            chain.headLink = link
            chain.count += 1
        }
        return try trim(chain, txn)
    }

    /// Two lists each in line, merged in line.
    static func merged(
        _ first: [(order: UInt64, event: AuditEvent)],
        _ second: [(order: UInt64, event: AuditEvent)]
    ) -> [AuditEvent] {
        var merged: [AuditEvent] = []
        merged.reserveCapacity(first.count + second.count)
        var (i, j) = (0, 0)
        while i < first.count || j < second.count {
            if j == second.count || (i < first.count && first[i].order <= second[j].order) {
                merged.append(first[i].event)
                i += 1
            } else {
                merged.append(second[j].event)
                j += 1
            }
        }
        return merged
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

    /// Walks the whole chain and names the first record that breaks it: an edited or reordered record (its link),
    /// a removed one (a gap in the numbers, or a link that no longer follows), a cut-off end (the head).
    func verify(_ chain: AuditChain, keys: KeyRing, _ txn: Transaction) throws(CofferError) {
        var previous = chain.startLink
        var last: UInt64 = 0
        var count: UInt64 = 0
        // The oldest kept record, when every kept record is numbered without gaps.
        let first = chain.headSequence >= chain.count ? chain.headSequence - chain.count + 1 : 1
        let expectFirst = chain.count > 0 && first > chain.gaplessAfter
        do {
            try txn.scan(db) { key, value in
                let sequence = StoreKeys.sequence(of: key)
                guard key.count == 8, value.count > Self.linkLength, sequence > last else {
                    throw CofferError(
                        .dataLoss,
                        "audit record \(sequence) is malformed or out of order: the store was altered"
                    )
                }
                let expected = last == 0 ? (expectFirst ? first : nil) : (last >= chain.gaplessAfter ? last + 1 : nil)
                if let expected, sequence != expected {
                    throw Self.missing(expected, sequence - 1)
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
        if last < chain.headSequence, last >= chain.gaplessAfter || (last == 0 && expectFirst) {
            throw Self.missing(last == 0 ? first : last + 1, chain.headSequence)
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

    private static func missing(_ from: UInt64, _ to: UInt64) -> CofferError {
        CofferError(
            .dataLoss,
            from == to
                ? "audit record \(from) is missing from the audit chain: it was removed"
                : "audit records \(from) to \(to) are missing from the audit chain: they were removed"
        )
    }

    /// The stored form of a record; `order` only while it waits (0 in the chain).
    static func entry(_ event: AuditEvent, order: UInt64 = 0) -> Coffer_Storage_V1_AuditEntry {
        var entry = Coffer_Storage_V1_AuditEntry()
        entry.order = order
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

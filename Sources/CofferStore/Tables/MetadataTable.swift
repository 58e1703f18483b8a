import CofferCore
import CofferCrypto
import Foundation

/// The store's one metadata record: its format, the key it was created with, the key generations, the
/// summary of every authenticated table, and where the audit chain stands. Tagged under a key no rotation
/// changes; rewritten in every write transaction.
struct MetadataTable {
    let db: Database

    /// The format this build writes.
    static let format: UInt32 = 2

    enum Stored {
        /// A store of format 1, which predates authentication: to migrate.
        case format1(Coffer_Storage_V1_Metadata)
        case format2(Coffer_Storage_V1_Metadata)
    }

    /// The metadata record, its tag checked with `keys` (any generation of the right master key will do).
    func read(keys: KeyRing, _ txn: Transaction) throws -> Stored? {
        guard let stored = try txn.get(db, StoreKeys.metadata) else { return nil }
        if stored.count > KeyRing.tagLength {
            let payload = stored.dropLast(KeyRing.tagLength)
            if ConstantTime.equals(Array(stored.suffix(KeyRing.tagLength)), keys.metadataTag(payload)) {
                var record = try Coffer_Storage_V1_Metadata(serializedBytes: Array(payload))
                guard record.formatVersion == Self.format else {
                    throw CofferError(
                        .failedPrecondition,
                        "the store has format version \(record.formatVersion); this cofferd reads versions 1 and 2"
                    )
                }
                record.addTablesMadeSince()
                return .format2(record)
            }
        }
        if let record = try? Coffer_Storage_V1_Metadata(serializedBytes: stored), record.formatVersion == 1 {
            return .format1(record)
        }
        // Either another master key (which the key check, read from the untagged fields, will say) or damage.
        if let record = try? Coffer_Storage_V1_Metadata(serializedBytes: Array(stored.dropLast(KeyRing.tagLength))),
            record.formatVersion == Self.format, !keys.matchesKeyCheck(Array(record.keyCheck))
        {
            return .format2(record)
        }
        throw CofferError(.dataLoss, "the store's metadata record failed its integrity check: the store was altered")
    }

    func write(_ record: Coffer_Storage_V1_Metadata, keys: KeyRing, _ txn: Transaction) throws {
        let payload: [UInt8] = try record.serializedBytes()
        try txn.put(db, StoreKeys.metadata, payload + keys.metadataTag(payload[...]))
    }

    /// The metadata of a new store of format 2.
    static func fresh(keys: KeyRing, now: Date) -> Coffer_Storage_V1_Metadata {
        var record = Coffer_Storage_V1_Metadata()
        record.formatVersion = format
        record.keyID = Data(keys.generations[1]?.keyID.bytes ?? keys.keyID.bytes)
        record.keyCheck = Data(keys.keyCheckValue)
        record.createdUnixMs = now.unixMillis
        var generation = Coffer_Storage_V1_KeyGenerationRecord()
        generation.number = 1
        generation.createdUnixMs = now.unixMillis
        generation.keyID = Data(keys.generations[1]?.keyID.bytes ?? keys.keyID.bytes)
        record.generations = [generation]
        record.activeGeneration = 1
        record.summaries = AuthenticatedTable.allCases.map { table in
            var summary = Coffer_Storage_V1_TableSummary()
            summary.table = table.rawValue
            summary.summary = Data(count: KeyRing.summaryLength)
            return summary
        }
        record.audit = AuditChain()
        record.journalNumbered = true
        return record
    }
}

extension Coffer_Storage_V1_Metadata {
    /// Where the audit chain stands, as the record holds it.
    var audit: AuditChain {
        get {
            AuditChain(
                headSequence: auditHeadSequence,
                headLink: auditHeadLink.isEmpty ? KeyRing.firstAuditLink : Array(auditHeadLink),
                startLink: auditStartLink.isEmpty ? KeyRing.firstAuditLink : Array(auditStartLink),
                count: auditCount,
                gaplessAfter: journalNumbered ? auditGaplessAfter : .max
            )
        }
        set {
            auditHeadSequence = newValue.headSequence
            auditHeadLink = Data(newValue.headLink)
            auditStartLink = Data(newValue.startLink)
            auditCount = newValue.count
        }
    }

    /// Tables a store of format 2 may have been made without: each starts empty when it is first read.
    static let tablesAddedLater: [AuthenticatedTable] = [.changes]

    /// Gives a store made before a table existed (the change feed) that table's summary, empty: its records
    /// are then counted and checked from the first one, like any other table's.
    mutating func addTablesMadeSince() {
        for table in Self.tablesAddedLater where !summaries.contains(where: { $0.table == table.rawValue }) {
            var summary = Coffer_Storage_V1_TableSummary()
            summary.table = table.rawValue
            summary.summary = Data(repeating: 0, count: KeyRing.summaryLength)
            summaries.append(summary)
        }
    }

    /// Applies what a write transaction changed to the tables' counts and summaries, and counts the write.
    mutating func apply(_ ledger: WriteLedger) {
        for index in summaries.indices {
            let table = summaries[index].table
            if let delta = ledger.summaries[table] {
                var summary = Array(summaries[index].summary)
                xorInto(&summary, delta)
                summaries[index].summary = Data(summary)
            }
            if let count = ledger.counts[table] {
                summaries[index].count = UInt64(Int64(summaries[index].count) + count)
            }
        }
        if let chain = ledger.audit { audit = chain }
        for edit in ledger.metadataEdits { edit(&self) }
        writeGeneration += 1
    }

    /// The key ring of this record's generations, from the master key behind `keys`.
    func keyRing(from keys: KeyRing) -> KeyRing {
        let numbers = generations.filter { $0.retiredUnixMs == 0 }.map(\.number)
        return keys.with(generations: numbers.isEmpty ? [1] : numbers, active: max(activeGeneration, 1))
    }
}

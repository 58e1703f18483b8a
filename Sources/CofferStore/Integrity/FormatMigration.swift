import CofferCore
import CofferCrypto
import Foundation

/// Turns a store of format 1 into format 2 in one write transaction, so that a crash leaves either the old
/// store or the new one: every connection gets an incarnation and its values are encrypted again bound to it;
/// every record is tagged and counted in its table's summary; the audit trail becomes a chain.
struct FormatMigration {
    let store: ConnectionStore

    func migrate(from old: Coffer_Storage_V1_Metadata) throws(CofferError) -> Coffer_Storage_V1_Metadata {
        let keys = store.keys
        let tables = store.tables
        let authority = store.authority
        return try store.raw(writing: true) { txn in
            let ledger = WriteLedger()
            func retag(_ db: Database, _ key: [UInt8], _ payload: [UInt8]) throws {
                let (stored, tag) = authority.seal(table: db.name, key: key, payload: payload)
                try txn.put(db, key, stored)
                ledger.record(table: db.name, key: key, old: nil, new: tag, stored: stored, keys: keys)
            }
            for (key, value) in try Self.entries(tables.connections.db, txn) {
                let ref = try StoreKeys.parseConnection(key)
                let old = try Coffer_Storage_V1_ConnectionRecord(serializedBytes: value)
                let values = try ConnectionTable.open(ref, old, keys: keys)
                let record = ConnectionTable.seal(
                    ref,
                    values.fields.sorted { $0.key < $1.key }.map { ($0.key, $0.value) },
                    version: old.version,
                    incarnation: SecureRandom.bytes(KeyRing.incarnationLength),
                    created: old.createdUnixMs,
                    updated: old.updatedUnixMs,
                    keys: keys
                )
                try retag(tables.connections.db, key, try record.serializedBytes())
            }
            for db in [tables.grants.db, tables.tokens.db] {
                for (key, value) in try Self.entries(db, txn) { try retag(db, key, value) }
            }
            var chain = AuditChain()
            for (key, value) in try Self.entries(tables.audit.db, txn) {
                let sequence = StoreKeys.sequence(of: key)
                _ = try AuditLog.event(sequence, try Coffer_Storage_V1_AuditEntry(serializedBytes: value))
                let link = keys.auditLink(previous: chain.headLink, sequence: sequence, entry: value[...])
                try txn.put(tables.audit.db, key, value + link)
                chain.headSequence = sequence
                chain.headLink = link
                chain.count += 1
            }
            var record = MetadataTable.fresh(keys: keys, now: Date(unixMillis: old.createdUnixMs))
            ledger.audit = chain
            record.apply(ledger)
            try tables.meta.write(record, keys: keys, txn)
            return record
        }
    }

    private static func entries(_ db: Database, _ txn: Transaction) throws -> [([UInt8], [UInt8])] {
        var entries: [([UInt8], [UInt8])] = []
        try txn.scan(db) { key, value in
            entries.append((key, value))
            return true
        }
        return entries
    }
}

import CofferCore
import CofferCrypto
import Foundation

/// The store's one metadata record: its format and the key it was created with.
struct MetadataTable {
    let db: Database

    func read(_ txn: Transaction) throws -> Coffer_Storage_V1_Metadata? {
        guard let bytes = try txn.get(db, StoreKeys.metadata) else { return nil }
        return try Coffer_Storage_V1_Metadata(serializedBytes: bytes)
    }

    /// Writes the record of a new store; ALREADY_EXISTS when there is one.
    func create(format: UInt32, keys: KeyRing, now: Date, _ txn: Transaction) throws {
        guard try read(txn) == nil else {
            throw CofferError(.alreadyExists, "the directory already holds a Coffer store; it is never replaced")
        }
        var record = Coffer_Storage_V1_Metadata()
        record.formatVersion = format
        record.keyID = Data(keys.keyID.bytes)
        record.keyCheck = Data(keys.keyCheckValue)
        record.createdUnixMs = now.unixMillis
        try txn.put(db, StoreKeys.metadata, try record.serializedBytes())
    }
}

import CofferCore
import CofferCrypto

/// Authenticated records: every read checks the record's tag and that it is what cofferd last wrote; every
/// write tags the record and notes the change in the transaction's ledger.
extension Transaction {
    /// The verified payload under `key`, or nil.
    func record(_ db: Database, _ key: [UInt8]) throws -> [UInt8]? {
        guard let authority else { return try get(db, key) }
        let stored = try get(db, key)
        let opened = try stored.map { stored throws(RecordFailure) in
            try authority.open(table: db.name, key: key, stored: stored)
        }
        try checkWritten(authority, db.name, key, opened?.tag)
        return opened?.payload
    }

    /// Stores `payload` under `key`, tagged, replacing a record that must itself verify.
    func putRecord(_ db: Database, _ key: [UInt8], _ payload: [UInt8]) throws {
        guard let authority, let ledger else { return try put(db, key, payload) }
        let old = try existingTag(authority, db, key)
        let (stored, tag) = authority.seal(table: db.name, key: key, payload: payload)
        try put(db, key, stored)
        ledger.record(table: db.name, key: key, old: old, new: tag, stored: stored, keys: authority.keys)
    }

    /// Removes the record under `key` (which must verify); false when there was none.
    @discardableResult
    func deleteRecord(_ db: Database, _ key: [UInt8]) throws -> Bool {
        guard let authority, let ledger else { return try delete(db, key) }
        guard let old = try existingTag(authority, db, key) else { return false }
        try delete(db, key)
        ledger.record(table: db.name, key: key, old: old, new: nil, stored: nil, keys: authority.keys)
        return true
    }

    /// Visits verified records in key order, those whose key starts with `prefix`, until `body` returns false.
    func scanRecords(_ db: Database, prefix: [UInt8] = [], _ body: ([UInt8], [UInt8]) throws -> Bool) throws {
        guard let authority else { return try scan(db, prefix: prefix, body) }
        try scan(db, prefix: prefix) { key, stored in
            let (payload, tag) = try authority.open(table: db.name, key: key, stored: stored)
            try checkWritten(authority, db.name, key, tag)
            return try body(key, payload)
        }
    }

    /// Visits verified records in key order from `start` (the first key to visit) until `body` returns false.
    func scanRecords(_ db: Database, from start: [UInt8], _ body: ([UInt8], [UInt8]) throws -> Bool) throws {
        guard let authority else { return try scan(db, from: start, body) }
        try scan(db, from: start) { key, stored in
            let (payload, tag) = try authority.open(table: db.name, key: key, stored: stored)
            try checkWritten(authority, db.name, key, tag)
            return try body(key, payload)
        }
    }

    /// The same, with the number of the generation that tagged each record; `from` the first key to visit
    /// (empty: the first record).
    func scanRecordsWithGeneration(
        _ db: Database,
        from start: [UInt8],
        _ body: ([UInt8], [UInt8], UInt32) throws -> Bool
    ) throws {
        guard let authority else { throw CofferError(.internal, "a scan by generation needs authenticated records") }
        let visit = { (key: [UInt8], stored: [UInt8]) throws -> Bool in
            let (payload, tag, generation) = try authority.openWithGeneration(table: db.name, key: key, stored: stored)
            try self.checkWritten(authority, db.name, key, tag)
            return try body(key, payload, generation)
        }
        // LMDB refuses an empty key to seek to: from the start is a plain scan.
        if start.isEmpty { try scan(db, visit) } else { try scan(db, from: start, visit) }
    }

    private func existingTag(_ authority: RecordAuthority, _ db: Database, _ key: [UInt8]) throws -> [UInt8]? {
        guard let stored = try get(db, key) else {
            try checkWritten(authority, db.name, key, nil)
            return nil
        }
        let tag = try authority.open(table: db.name, key: key, stored: stored).tag
        try checkWritten(authority, db.name, key, tag)
        return tag
    }

    /// What this transaction wrote decides first; otherwise the map of what cofferd wrote, as of this
    /// transaction's snapshot.
    private func checkWritten(_ authority: RecordAuthority, _ table: String, _ key: [UInt8], _ tag: [UInt8]?) throws {
        if let written = ledger?.latestTag(table: table, key: key) {
            guard written == tag else {
                throw RecordFailure(table: table, key: RecordAuthority.name(key), reason: "changed under cofferd")
            }
            return
        }
        try authority.check(table: table, key: key, tag: tag, snapshot: snapshot, tolerant: tolerant)
    }
}

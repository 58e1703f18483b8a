internal import CLMDB
import Glibc

/// A transaction, valid only inside the closure it was passed to. Values read are copied into Swift arrays,
/// because LMDB's pointers are valid only until the transaction ends.
final class Transaction {
    let handle: OpaquePointer
    let readOnly: Bool
    private var finished = false
    /// Who checks and tags authenticated records; nil for raw access (migration, tests that tamper).
    var authority: RecordAuthority?
    /// What a write transaction changed among authenticated records.
    var ledger: WriteLedger?
    /// A long read (a scan of metadata, never a value) that takes, for a record changed after its snapshot,
    /// the older copy its snapshot holds (its tag still checked) instead of starting again: under a steady
    /// stream of writes a scan of every record would otherwise never finish.
    var tolerant = false

    init(handle: OpaquePointer, readOnly: Bool) {
        self.handle = handle
        self.readOnly = readOnly
    }

    /// The last committed write transaction this transaction sees: its snapshot.
    var snapshot: Int {
        let id = Int(mdb_txn_id(handle))
        return readOnly ? id : id - 1
    }

    func finish() { finished = true }

    /// Runs `body` in a transaction nested in this write transaction: its changes join this one when it
    /// returns and are undone when it throws, while this one goes on. This transaction must not be used
    /// until `body` returns.
    func nested<R>(_ body: (Transaction) throws -> R) throws -> R {
        checkLive(writing: true)
        var childHandle: OpaquePointer?
        try LMDBError.check(mdb_txn_begin(mdb_txn_env(handle), handle, 0, &childHandle), "mdb_txn_begin (nested)")
        guard let childHandle else { throw LMDBError(code: ENOMEM, operation: "mdb_txn_begin (nested)") }
        let child = Transaction(handle: childHandle, readOnly: false)
        child.authority = authority
        child.ledger = ledger.map { WriteLedger(parent: $0) }
        let result: R
        do {
            result = try body(child)
        } catch {
            child.finish()
            mdb_txn_abort(childHandle)
            throw error
        }
        child.finish()
        try LMDBError.check(mdb_txn_commit(childHandle), "mdb_txn_commit (nested)")
        if let parent = ledger, let nested = child.ledger { parent.merge(nested) }
        return result
    }

    /// The pages in LMDB's freelist (database 0), which later writes reuse before growing the file. Each
    /// freelist entry is a list of page numbers whose first element is its length.
    func freelistPages() throws -> Int {
        checkLive()
        var cursor: OpaquePointer?
        try LMDBError.check(mdb_cursor_open(handle, 0, &cursor), "mdb_cursor_open freelist")
        defer { mdb_cursor_close(cursor) }
        var pages = 0
        var key = MDB_val()
        var value = MDB_val()
        var op = MDB_FIRST
        while mdb_cursor_get(cursor, &key, &value, op) == MDB_SUCCESS {
            if value.mv_size >= MemoryLayout<Int>.size, let data = value.mv_data {
                pages += data.loadUnaligned(as: Int.self)
            }
            op = MDB_NEXT
        }
        return pages
    }

    private func checkLive(writing: Bool = false) {
        precondition(!finished, "an LMDB transaction was used after its closure returned")
        precondition(!writing || !readOnly, "a write in a read-only LMDB transaction")
    }

    /// The value under `key`, or nil.
    func get(_ db: Database, _ key: [UInt8]) throws -> [UInt8]? {
        checkLive()
        return try key.withUnsafeBytes { key in
            var k = MDB_val(mv_size: key.count, mv_data: UnsafeMutableRawPointer(mutating: key.baseAddress))
            var v = MDB_val()
            let rc = mdb_get(handle, db.dbi, &k, &v)
            if rc == MDB_NOTFOUND { return nil }
            try LMDBError.check(rc, "mdb_get \(db.name)")
            return Self.copy(v)
        }
    }

    /// Stores `value` under `key`, replacing any value there.
    func put(_ db: Database, _ key: [UInt8], _ value: [UInt8]) throws {
        checkLive(writing: true)
        try key.withUnsafeBytes { key in
            try value.withUnsafeBytes { value in
                var k = MDB_val(mv_size: key.count, mv_data: UnsafeMutableRawPointer(mutating: key.baseAddress))
                var v = MDB_val(mv_size: value.count, mv_data: UnsafeMutableRawPointer(mutating: value.baseAddress))
                try LMDBError.check(mdb_put(handle, db.dbi, &k, &v, 0), "mdb_put \(db.name)")
            }
        }
    }

    /// Deletes `key`; false when it was not there.
    @discardableResult
    func delete(_ db: Database, _ key: [UInt8]) throws -> Bool {
        checkLive(writing: true)
        return try key.withUnsafeBytes { key in
            var k = MDB_val(mv_size: key.count, mv_data: UnsafeMutableRawPointer(mutating: key.baseAddress))
            let rc = mdb_del(handle, db.dbi, &k, nil)
            if rc == MDB_NOTFOUND { return false }
            try LMDBError.check(rc, "mdb_del \(db.name)")
            return true
        }
    }

    /// Visits, in key order, every entry whose key starts with `prefix` (every entry for an empty prefix),
    /// until `body` returns false.
    func scan(_ db: Database, prefix: [UInt8] = [], _ body: ([UInt8], [UInt8]) throws -> Bool) throws {
        checkLive()
        let cursor = try Cursor(self, db)
        defer { cursor.close() }
        var entry = try prefix.isEmpty ? cursor.first() : cursor.seek(atLeast: prefix)
        while let (key, value) = entry, key.starts(with: prefix) {
            guard try body(key, value) else { return }
            entry = try cursor.next()
        }
    }

    /// The first and last entries of a database, or nil when it is empty.
    func bounds(_ db: Database) throws -> (first: [UInt8], last: [UInt8])? {
        checkLive()
        let cursor = try Cursor(self, db)
        defer { cursor.close() }
        guard let first = try cursor.first(), let last = try cursor.last() else { return nil }
        return (first.0, last.0)
    }

    /// Visits, in key order, every entry whose key is at or after `start`, until `body` returns false.
    func scan(_ db: Database, from start: [UInt8], _ body: ([UInt8], [UInt8]) throws -> Bool) throws {
        checkLive()
        let cursor = try Cursor(self, db)
        defer { cursor.close() }
        var entry = try cursor.seek(atLeast: start)
        while let (key, value) = entry {
            guard try body(key, value) else { return }
            entry = try cursor.next()
        }
    }

    static func copy(_ value: MDB_val) -> [UInt8] {
        guard value.mv_size > 0, let data = value.mv_data else { return [] }
        return Array(UnsafeRawBufferPointer(start: data, count: value.mv_size))
    }
}

/// A cursor over one database within one transaction; closed by its owner before the transaction ends.
final class Cursor {
    private var handle: OpaquePointer?
    private let db: Database

    init(_ txn: Transaction, _ db: Database) throws {
        self.db = db
        try LMDBError.check(mdb_cursor_open(txn.handle, db.dbi, &handle), "mdb_cursor_open \(db.name)")
    }

    func close() {
        if let handle { mdb_cursor_close(handle) }
        handle = nil
    }

    deinit { close() }

    func first() throws -> ([UInt8], [UInt8])? { try move(MDB_FIRST) }
    func last() throws -> ([UInt8], [UInt8])? { try move(MDB_LAST) }
    func next() throws -> ([UInt8], [UInt8])? { try move(MDB_NEXT) }

    /// The first entry whose key is at or after `key`.
    func seek(atLeast key: [UInt8]) throws -> ([UInt8], [UInt8])? {
        try key.withUnsafeBytes { key in
            var k = MDB_val(mv_size: key.count, mv_data: UnsafeMutableRawPointer(mutating: key.baseAddress))
            return try move(MDB_SET_RANGE, key: &k)
        }
    }

    private func move(
        _ op: MDB_cursor_op,
        key: UnsafeMutablePointer<MDB_val>? = nil
    ) throws
        -> ([UInt8], [UInt8])?
    {
        var k = key?.pointee ?? MDB_val()
        var v = MDB_val()
        let rc = mdb_cursor_get(handle, &k, &v, op)
        if rc == MDB_NOTFOUND { return nil }
        try LMDBError.check(rc, "mdb_cursor_get \(db.name)")
        return (Transaction.copy(k), Transaction.copy(v))
    }
}

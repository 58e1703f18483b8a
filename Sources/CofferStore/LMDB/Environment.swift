internal import CLMDB
import Foundation
import Synchronization

/// An LMDB environment: one memory-mapped file and its named databases.
///
/// One per process and path (LMDB's documentation: "Do not have open an LMDB database twice in the same
/// process at the same time"), so a second open of the same directory in this process is refused. It is
/// opened with `MDB_NOTLS` so that read transactions are not tied to threads, which Swift concurrency and
/// event loops move work between. Transactions are closure-scoped and synchronous: a write transaction begins
/// and commits on the calling thread and can never span an `await`. A second writer blocks in `mdb_txn_begin`
/// until the first commits, so call `write` from a thread that may block, never from an event loop. Reads
/// never wait for a writer.
final class Environment: @unchecked Sendable {
    // Safe to share: `handle` is immutable until `close()`, which waits for every transaction to finish; the
    // rest is guarded by `gate`.
    private let handle: OpaquePointer
    let path: String
    private let gate = NSCondition()
    private var active = 0
    private var closed = false
    /// Set while the map is being resized: new transactions wait, since LMDB remaps the file.
    private var resizing = false
    private var currentMapSize: Int
    /// Read transactions kept for reuse: `mdb_txn_reset` keeps a transaction's reader slot, so `mdb_txn_renew`
    /// starts the next read without taking LMDB's reader-table lock.
    private var idleReaders: [OpaquePointer] = []

    private static let openPaths = Mutex<Set<String>>([])
    /// Readers at once: every thread that may read at the same moment needs a slot.
    static let maxReaders: UInt32 = 512

    /// Opens (creating if needed) the environment in `directory`, whose files get `mode`.
    init(directory: String, mapSize: Int, maxDatabases: Int, mode: mode_t = 0o600) throws {
        let key = URL(fileURLWithPath: directory).resolvingSymlinksInPath().path
        let claimed = Self.openPaths.withLock { $0.insert(key).inserted }
        guard claimed else {
            throw LMDBError(
                code: LMDBError.alreadyOpenCode,
                operation: "open \(directory): already open in this process"
            )
        }
        var env: OpaquePointer?
        do {
            try LMDBError.check(mdb_env_create(&env), "mdb_env_create")
            guard let env else { throw LMDBError(code: ENOMEM, operation: "mdb_env_create") }
            do {
                try LMDBError.check(mdb_env_set_maxdbs(env, MDB_dbi(maxDatabases)), "mdb_env_set_maxdbs")
                try LMDBError.check(mdb_env_set_maxreaders(env, Self.maxReaders), "mdb_env_set_maxreaders")
                try LMDBError.check(mdb_env_set_mapsize(env, mapSize), "mdb_env_set_mapsize")
                // LMDB flags import as Int32; the parameter is unsigned.
                let flags = UInt32(MDB_NOTLS)
                try LMDBError.check(mdb_env_open(env, directory, flags, mode), "mdb_env_open \(directory)")
            } catch {
                mdb_env_close(env)
                throw error
            }
            handle = env
        } catch {
            Self.openPaths.withLock { _ = $0.remove(key) }
            throw error
        }
        path = key
        var info = MDB_envinfo()
        mdb_env_info(handle, &info)
        currentMapSize = info.me_mapsize
    }

    deinit { close() }

    /// Closes the environment once every transaction in flight has ended. Later transactions throw.
    func close() {
        gate.lock()
        if closed {
            gate.unlock()
            return
        }
        closed = true
        while active > 0 { gate.wait() }
        let readers = idleReaders
        idleReaders = []
        gate.unlock()
        for reader in readers { mdb_txn_abort(reader) }
        mdb_env_close(handle)
        Self.openPaths.withLock { _ = $0.remove(path) }
    }

    /// The map's size now, in bytes.
    var mapSize: Int { gate.withLock { currentMapSize } }

    /// Changes the map's size once the transactions in flight have ended; new ones wait meanwhile. LMDB:
    /// "This function may only be called if no transactions are active in this process." A size below what
    /// the file uses is raised to it.
    func resize(to size: Int) throws {
        gate.lock()
        defer { gate.unlock() }
        guard !closed else { throw LMDBError(code: LMDBError.closedCode, operation: "resize a closed store") }
        resizing = true
        while active > 0 { gate.wait() }
        defer {
            resizing = false
            gate.broadcast()
        }
        try LMDBError.check(mdb_env_set_mapsize(handle, size), "mdb_env_set_mapsize")
        var info = MDB_envinfo()
        mdb_env_info(handle, &info)
        currentMapSize = info.me_mapsize
    }

    /// Opens a named database, creating it if it does not exist.
    func database(_ name: String) throws -> Database {
        try write { txn in
            var dbi = MDB_dbi()
            try LMDBError.check(mdb_dbi_open(txn.handle, name, UInt32(MDB_CREATE), &dbi), "mdb_dbi_open \(name)")
            return Database(dbi: dbi, name: name)
        }
    }

    /// Runs `body` in a read-only transaction. Bytes read are copied out before it returns.
    func read<R>(_ body: (Transaction) throws -> R) throws -> R {
        try enter()
        defer { leave() }
        let reader = try takeReader()
        let txn = Transaction(handle: reader, readOnly: true)
        defer {
            txn.finish()
            mdb_txn_reset(reader)
            gate.withLock { idleReaders.append(reader) }
        }
        return try body(txn)
    }

    /// Runs `body` in a write transaction that commits (and syncs) when it returns and aborts when it throws.
    func write<R>(_ body: (Transaction) throws -> R) throws -> R {
        try writeOrAbort { txn in (try body(txn), true) }
    }

    /// Runs `body` in a write transaction that commits (and syncs) when it returns true with its result, and
    /// aborts when it returns false or throws.
    func writeOrAbort<R>(_ body: (Transaction) throws -> (R, commit: Bool)) throws -> R {
        try enter()
        defer { leave() }
        var txnHandle: OpaquePointer?
        try LMDBError.check(mdb_txn_begin(handle, nil, 0, &txnHandle), "mdb_txn_begin")
        guard let txnHandle else { throw LMDBError(code: ENOMEM, operation: "mdb_txn_begin") }
        let txn = Transaction(handle: txnHandle, readOnly: false)
        let result: R
        let commit: Bool
        do {
            (result, commit) = try body(txn)
        } catch {
            txn.finish()
            mdb_txn_abort(txnHandle)
            throw error
        }
        txn.finish()
        guard commit else {
            mdb_txn_abort(txnHandle)
            return result
        }
        // Commit on the thread that began the transaction, as LMDB requires.
        try LMDBError.check(mdb_txn_commit(txnHandle), "mdb_txn_commit")
        return result
    }

    private func enter() throws {
        gate.lock()
        defer { gate.unlock() }
        while resizing && !closed { gate.wait() }
        guard !closed else { throw LMDBError(code: LMDBError.closedCode, operation: "transaction on a closed store") }
        active += 1
    }

    private func leave() {
        gate.lock()
        active -= 1
        if active == 0 { gate.broadcast() }
        gate.unlock()
    }

    /// A renewed read transaction: a kept one if there is one, a new one otherwise.
    private func takeReader() throws -> OpaquePointer {
        if let kept = gate.withLock({ idleReaders.popLast() }) {
            let renewed = mdb_txn_renew(kept)
            if renewed == MDB_SUCCESS { return kept }
            mdb_txn_abort(kept)
        }
        var reader: OpaquePointer?
        try LMDBError.check(mdb_txn_begin(handle, nil, UInt32(MDB_RDONLY), &reader), "mdb_txn_begin (read)")
        guard let reader else { throw LMDBError(code: ENOMEM, operation: "mdb_txn_begin (read)") }
        return reader
    }
}

/// A named database in an environment; its handle lives as long as the environment.
struct Database: Sendable {
    let dbi: MDB_dbi
    let name: String
}

/// How much of the map is in use.
struct MapUsage: Sendable {
    /// Bytes up to the last page written: the file's high-water mark.
    var highWater: Int
    /// Bytes of pages below the high-water mark that are free for reuse.
    var free: Int
    var pageSize: Int

    /// Bytes holding data now.
    var used: Int { highWater - free }
}

extension Environment {
    /// The map's high-water mark and the pages LMDB keeps free for reuse (its freelist, database 0), read in
    /// a read transaction.
    func usage() throws -> MapUsage {
        var info = MDB_envinfo()
        var stat = MDB_stat()
        try LMDBError.check(mdb_env_info(handle, &info), "mdb_env_info")
        try LMDBError.check(mdb_env_stat(handle, &stat), "mdb_env_stat")
        let pageSize = Int(stat.ms_psize)
        let freePages = try read { txn in try txn.freelistPages() }
        return MapUsage(highWater: (info.me_last_pgno + 1) * pageSize, free: freePages * pageSize, pageSize: pageSize)
    }

    /// Writes a consistent copy of the environment, compacted (free pages left out), to `fd`, from one read
    /// transaction: writers go on meanwhile.
    func copy(to fd: Int32) throws {
        try enter()
        defer { leave() }
        try LMDBError.check(mdb_env_copyfd2(handle, fd, UInt32(MDB_CP_COMPACT)), "mdb_env_copyfd2")
    }

    /// Flushes what committed transactions wrote to the disk.
    func sync() throws {
        try LMDBError.check(mdb_env_sync(handle, 1), "mdb_env_sync")
    }
}

internal import CLMDB
import Foundation
import Synchronization

/// An LMDB environment: one memory-mapped file and its named databases.
///
/// One per process and path (LMDB's documentation: "Do not have open an LMDB database twice in the same
/// process at the same time"), so a second open of the same directory in this process is refused. It is
/// opened with `MDB_NOTLS` so that read transactions are not tied to threads, which Swift concurrency moves
/// work between. Transactions are closure-scoped and synchronous: a write transaction begins and commits on
/// the calling thread and can never span an `await`. A second writer blocks in `mdb_txn_begin` until the
/// first commits, so call `write` from a thread that may block (a thread pool), never from an event loop.
final class Environment: @unchecked Sendable {
    // Safe to share: `handle` is immutable until `close()`, which waits for every transaction to finish.
    private let handle: OpaquePointer
    let path: String
    let mapSize: Int
    private let gate = NSCondition()
    private var active = 0
    private var closed = false

    private static let openPaths = Mutex<Set<String>>([])

    /// Opens (creating if needed) the environment in `directory`, whose files get `mode`.
    init(directory: String, mapSize: Int, maxDatabases: Int, mode: mode_t = 0o600) throws {
        let key = URL(fileURLWithPath: directory).resolvingSymlinksInPath().path
        let claimed = Self.openPaths.withLock { $0.insert(key).inserted }
        guard claimed else {
            // EBUSY: the nearest POSIX meaning; the store turns it into a clear message.
            throw LMDBError(code: EBUSY, operation: "open \(directory): already open in this process")
        }
        var env: OpaquePointer?
        do {
            try LMDBError.check(mdb_env_create(&env), "mdb_env_create")
            guard let env else { throw LMDBError(code: ENOMEM, operation: "mdb_env_create") }
            do {
                try LMDBError.check(mdb_env_set_maxdbs(env, MDB_dbi(maxDatabases)), "mdb_env_set_maxdbs")
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
        self.mapSize = mapSize
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
        gate.unlock()
        mdb_env_close(handle)
        Self.openPaths.withLock { _ = $0.remove(path) }
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
        try run(readOnly: true, body)
    }

    /// Runs `body` in a write transaction that commits when it returns and aborts when it throws.
    func write<R>(_ body: (Transaction) throws -> R) throws -> R {
        try run(readOnly: false, body)
    }

    private func run<R>(readOnly: Bool, _ body: (Transaction) throws -> R) throws -> R {
        gate.lock()
        guard !closed else {
            gate.unlock()
            throw (LMDBError(code: EINVAL, operation: "transaction on a closed store"))
        }
        active += 1
        gate.unlock()
        defer {
            gate.lock()
            active -= 1
            if active == 0 { gate.broadcast() }
            gate.unlock()
        }

        var txnHandle: OpaquePointer?
        let flags = readOnly ? UInt32(MDB_RDONLY) : 0
        let begun = mdb_txn_begin(handle, nil, flags, &txnHandle)
        guard begun == MDB_SUCCESS, let txnHandle else {
            throw (LMDBError(code: begun, operation: "mdb_txn_begin"))
        }
        let txn = Transaction(handle: txnHandle, readOnly: readOnly)
        let result: R
        do {
            result = try body(txn)
        } catch {
            txn.finish()
            mdb_txn_abort(txnHandle)
            throw error
        }
        txn.finish()
        if readOnly {
            mdb_txn_abort(txnHandle)
        } else {
            // Commit on the thread that began the transaction, as LMDB requires.
            let committed = mdb_txn_commit(txnHandle)
            guard committed == MDB_SUCCESS else {
                throw (LMDBError(code: committed, operation: "mdb_txn_commit"))
            }
        }
        return result
    }
}

/// A named database in an environment; its handle lives as long as the environment.
struct Database: Sendable {
    let dbi: MDB_dbi
    let name: String
}

extension Environment {
    /// Bytes of the map in use: the last page LMDB has written, times its page size.
    func usedBytes() throws -> Int {
        var info = MDB_envinfo()
        var stat = MDB_stat()
        try LMDBError.check(mdb_env_info(handle, &info), "mdb_env_info")
        try LMDBError.check(mdb_env_stat(handle, &stat), "mdb_env_stat")
        return (info.me_last_pgno + 1) * Int(stat.ms_psize)
    }
}

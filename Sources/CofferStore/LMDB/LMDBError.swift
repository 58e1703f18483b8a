internal import CLMDB

/// A result code from LMDB, with LMDB's own message for it.
struct LMDBError: Error, CustomStringConvertible, Equatable {
    let code: Int32
    /// What was being done, for the server log.
    let operation: String

    var description: String { "\(operation): \(String(cString: mdb_strerror(code))) (\(code))" }

    static func check(_ code: Int32, _ operation: @autoclosure () -> String) throws {
        guard code == MDB_SUCCESS else { throw LMDBError(code: code, operation: operation()) }
    }

    var isMapFull: Bool { code == MDB_MAP_FULL }
}

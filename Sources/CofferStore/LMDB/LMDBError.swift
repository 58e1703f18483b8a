internal import CLMDB
import CofferCore
import Glibc

/// A result code from LMDB (or the system, for I/O), with LMDB's own message for it. Callers above the LMDB
/// layer look only at `kind`.
struct LMDBError: Error, CustomStringConvertible, Equatable {
    /// What a failure means to the store, so that nothing above this layer tests LMDB's codes.
    enum Kind: Equatable {
        /// The map is full: no page left within the map size.
        case mapFull
        /// The disk (or the quota) has no room for the file to grow.
        case diskFull
        /// The disk failed a read or a write.
        case io
        /// The file is not an LMDB environment this library can read, or a page is damaged.
        case corrupted
        /// The environment is already open in this process.
        case alreadyOpen
        /// The environment was closed.
        case closed
        /// Anything else.
        case other
    }

    let code: Int32
    /// What was being done, for the server log.
    let operation: String

    var description: String { "\(operation): \(String(cString: mdb_strerror(code))) (\(code))" }

    var kind: Kind {
        switch code {
        case MDB_MAP_FULL: .mapFull
        case ENOSPC, EDQUOT, EFBIG: .diskFull
        case EIO, MDB_PANIC: .io
        case MDB_CORRUPTED, MDB_PAGE_NOTFOUND, MDB_INVALID, MDB_VERSION_MISMATCH, MDB_BAD_TXN: .corrupted
        case Self.alreadyOpenCode: .alreadyOpen
        case Self.closedCode: .closed
        default: .other
        }
    }

    // Codes outside LMDB's and the system's ranges, for the two conditions this wrapper detects itself.
    static let alreadyOpenCode: Int32 = -40_001
    static let closedCode: Int32 = -40_002

    static func check(_ code: Int32, _ operation: @autoclosure () -> String) throws {
        guard code == MDB_SUCCESS else { throw LMDBError(code: code, operation: operation()) }
    }
}

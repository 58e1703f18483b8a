import CofferCore
import CofferCrypto
import Foundation

/// Checks a whole store: every authenticated record's tag, each table's count and summary against the
/// metadata record, and the audit chain from its start to its head. Run when a store opens (which then keeps
/// the map of what cofferd wrote) and by `cofferd verify` (which reports every problem it finds).
struct StoreVerifier {
    let store: ConnectionStore

    /// Verifies the store and, for the process that serves it, starts the map of what cofferd wrote; DATA_LOSS
    /// with the first problem.
    func verify(keepingMap: Bool = true) throws(CofferError) {
        let (problems, records, transaction) = try check(stopAtFirst: true)
        if let first = problems.first { throw first }
        if keepingMap { store.authority.start(with: records, transaction: transaction) }
    }

    /// Every problem found, each naming the record or table (never a value).
    func problems() throws(CofferError) -> [CofferError] {
        try check(stopAtFirst: false).problems
    }

    private func check(
        stopAtFirst: Bool
    ) throws(CofferError)
        -> (problems: [CofferError], records: [(table: String, key: [UInt8], tag: [UInt8])], transaction: Int)
    {
        let tables = store.tables
        let databases = AuthenticatedTable.allCases.compactMap { tables.authenticated($0.rawValue) }
        return try store.raw { txn in
            // The metadata this snapshot holds: a cofferd serving the same store (while `cofferd backup` or
            // `cofferd verify` runs beside it) may have committed since this store opened.
            let metadata = try store.adoptMetadata(in: txn)
            let keys = store.keys
            var problems: [CofferError] = []
            var records: [(table: String, key: [UInt8], tag: [UInt8])] = []
            for db in databases {
                var summary = [UInt8](repeating: 0, count: KeyRing.summaryLength)
                var count: UInt64 = 0
                try txn.scan(db) { key, stored in
                    do {
                        let (_, tag) = try store.authority.open(table: db.name, key: key, stored: stored)
                        xorInto(&summary, keys.summaryElement(table: db.name, key: key, tag: tag))
                        records.append((db.name, key, tag))
                    } catch let failure as RecordFailure {
                        problems.append(failure.error)
                    }
                    count += 1
                    return !(stopAtFirst && !problems.isEmpty)
                }
                if stopAtFirst && !problems.isEmpty { break }
                let expected = metadata.summaries.first { $0.table == db.name }
                if let problem = Self.compare(table: db.name, count: count, summary: summary, expected: expected) {
                    problems.append(problem)
                    if stopAtFirst { break }
                }
            }
            if problems.isEmpty || !stopAtFirst {
                do throws(CofferError) {
                    try tables.audit.verify(metadata.audit, keys: keys, txn)
                } catch {
                    problems.append(error)
                }
            }
            let waiting = try txn.bounds(tables.audit.pending).map { StoreKeys.sequence(of: $0.last) } ?? 0
            store.auditOrder.raise(to: waiting)
            return (problems, records, txn.snapshot)
        }
    }

    /// Why a table does not match what the metadata says of it, or nil when it does.
    static func compare(
        table: String,
        count: UInt64,
        summary: [UInt8],
        expected: Coffer_Storage_V1_TableSummary?
    )
        -> CofferError?
    {
        guard let expected else {
            return CofferError(
                .dataLoss,
                "the store's metadata has no summary of table \(table): the store was altered"
            )
        }
        if count < expected.count {
            return CofferError(
                .dataLoss,
                "table \(table) holds \(count) records where the store wrote \(expected.count): records were removed"
            )
        }
        if count > expected.count {
            return CofferError(
                .dataLoss,
                "table \(table) holds \(count) records where the store wrote \(expected.count): records were injected or brought back"
            )
        }
        guard ConstantTime.equals(summary, Array(expected.summary)) else {
            return CofferError(
                .dataLoss,
                "the records of table \(table) do not match the store's summary: a record was replaced by an older copy of itself"
            )
        }
        return nil
    }
}

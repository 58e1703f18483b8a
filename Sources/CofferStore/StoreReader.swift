import CofferCore
import CofferCrypto
import Foundation

/// What may be read in one transaction of the store. Valid only inside the closure it was handed to.
public struct StoreReader {
    let store: ConnectionStore
    let txn: Transaction

    var tables: ConnectionStore.Tables { store.tables }
    /// The time the transaction acts at.
    var now: Date { store.now }

    /// What a presented token stands for, if it is genuine, unexpired and unrevoked; UNAUTHENTICATED if not.
    public func verifyToken(_ token: SecretBytes) throws -> TokenInfo {
        try tables.tokens.verify(token, keys: store.keys, now: now, txn)
    }

    /// A connection's values for `workflow`. PERMISSION_DENIED when the workflow holds no grant for it,
    /// whether or not it exists, so that the answer reveals nothing to an ungranted caller; NOT_FOUND when
    /// it was granted and has since been deleted.
    public func values(of ref: ConnectionRef, for workflow: WorkflowName) throws -> ConnectionValues {
        switch try tables.grants.state(ref, workflow, txn) {
        case .none:
            throw CofferError(.permissionDenied, "workflow \(workflow) is not granted connection \(ref)")
        case .connectionDeleted:
            throw CofferError(.notFound, "connection \(ref) was deleted")
        case .active:
            guard let record = try tables.connections.record(ref, txn) else {
                throw CofferError(.notFound, "connection \(ref) was deleted")
            }
            return try ConnectionTable.open(ref, record, keys: store.keys)
        }
    }

    /// Every connection's metadata, sorted by type and name; never a value.
    public func list() throws -> [ConnectionInfo] {
        let grants = try tables.grants.activeByConnection(txn)
        return try tables.connections.all(txn)
            .map { ref, record in ConnectionTable.info(ref, record, grants: (grants[ref] ?? []).sorted()) }
            .sorted { $0.ref < $1.ref }
    }

    /// One connection's metadata; NOT_FOUND when it does not exist.
    public func info(_ ref: ConnectionRef) throws -> ConnectionInfo {
        ConnectionTable.info(ref, try tables.connections.existing(ref, txn), grants: try tables.grants.active(ref, txn))
    }

    /// The connections `workflow` may get now, sorted. A scan of the grants.
    public func connections(grantedTo workflow: WorkflowName) throws -> [ConnectionRef] {
        try tables.grants.activeByConnection(txn).filter { $0.value.contains(workflow) }.keys.sorted()
    }

    /// Whether `workflow` may get `ref` now.
    public func isGranted(_ workflow: WorkflowName, _ ref: ConnectionRef) throws -> Bool {
        try tables.grants.state(ref, workflow, txn) == .active
    }

    /// Every token's record, sorted by id; never a token.
    public func listTokens() throws -> [TokenInfo] { try tables.tokens.all(txn) }

    /// Audit records after `sequence`, oldest first, at most `limit`, and where the chain ended. Records of
    /// the last moments may still wait in the journal or for a fold: the writer folds before it reads the trail.
    public func auditPage(after sequence: UInt64, limit: Int) throws -> AuditPage {
        if let chain = txn.ledger?.audit {
            return try tables.audit.page(after: sequence, limit: limit, chain: chain, txn)
        }
        guard case .format2(let metadata)? = try tables.meta.read(keys: store.keys, txn) else {
            throw CofferError(.dataLoss, "the store's metadata record is missing")
        }
        return try tables.audit.page(after: sequence, limit: limit, chain: metadata.audit, txn)
    }
}

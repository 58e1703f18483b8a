import CofferCore
import CofferCrypto
import Foundation

// Single operations, each in one transaction of its own: for tools, tests and the store's own start-up;
// the server groups its writes in the commit queue instead.

extension ConnectionStore {
    /// Opens sealed fields with this store's keys and limits: sealed to the active key, or to one superseded
    /// within the grace period.
    public func open(_ fields: SealedFields) throws(CofferError) -> OpenedFields {
        try fields.open(with: keys, limits: configuration.limits, accepting: acceptsSealed)
    }

    /// Creates a connection; ALREADY_EXISTS if it exists.
    @discardableResult
    public func put(
        _ ref: ConnectionRef,
        fields: [FieldName: SealedValue],
        audit event: AuditEvent? = nil
    )
        throws(CofferError) -> ConnectionInfo
    {
        let values = try open(SealedFields(fields))
        return try write { writer in try writer.audited(event) { try $0.put(ref, values) } }
    }

    /// Replaces all of a connection's fields and raises its version by one.
    @discardableResult
    public func overwrite(
        _ ref: ConnectionRef,
        fields: [FieldName: SealedValue],
        expectedVersion: UInt64? = nil,
        audit event: AuditEvent? = nil
    ) throws(CofferError) -> ConnectionInfo {
        let values = try open(SealedFields(fields))
        return try write { writer in
            try writer.audited(event) { try $0.overwrite(ref, values, expectedVersion: expectedVersion) }
        }
    }

    /// Deletes a connection and turns its grants into tombstones.
    public func delete(
        _ ref: ConnectionRef,
        expectedVersion: UInt64? = nil,
        audit event: AuditEvent? = nil
    )
        throws(CofferError)
    {
        try write { writer in try writer.audited(event) { try $0.delete(ref, expectedVersion: expectedVersion) } }
    }

    /// A connection's values for `workflow`; see `StoreReader.values(of:for:)`.
    public func get(_ ref: ConnectionRef, for workflow: WorkflowName) throws(CofferError) -> ConnectionValues {
        try read { try $0.values(of: ref, for: workflow) }
    }

    /// Every connection's metadata, sorted by type and name; never a value.
    public func list() throws(CofferError) -> [ConnectionInfo] { try read(tolerant: true) { try $0.list() } }

    /// One connection's metadata; NOT_FOUND when it does not exist.
    public func info(_ ref: ConnectionRef) throws(CofferError) -> ConnectionInfo { try read { try $0.info(ref) } }

    /// Lets `workflow` get `ref`; false when the grant was already there.
    @discardableResult
    public func grant(
        _ workflow: WorkflowName,
        _ ref: ConnectionRef,
        audit event: AuditEvent? = nil
    )
        throws(CofferError) -> Bool
    {
        try write { writer in try writer.audited(event) { try $0.grant(workflow, ref) } }
    }

    /// Takes a grant away; NOT_FOUND when there is none.
    public func revoke(
        _ workflow: WorkflowName,
        _ ref: ConnectionRef,
        audit event: AuditEvent? = nil
    )
        throws(CofferError)
    {
        try write { writer in try writer.audited(event) { try $0.revoke(workflow, ref) } }
    }

    public func isGranted(_ workflow: WorkflowName, _ ref: ConnectionRef) throws(CofferError) -> Bool {
        try read { try $0.isGranted(workflow, ref) }
    }

    /// Issues a token that expires after `ttl`; the token is returned once, only its keyed hash is stored.
    public func issueToken(
        for workflow: WorkflowName,
        ttl: Duration,
        runID: RunID? = nil,
        audit event: AuditEvent? = nil
    ) throws(CofferError) -> IssuedToken {
        try write { writer in
            let issued = try writer.issueToken(for: workflow, ttl: ttl, runID: runID)
            if var event {
                event.tokenID = issued.info.id
                try writer.appendAudit(event)
            }
            return issued
        }
    }

    public func verifyToken(_ token: SecretBytes) throws(CofferError) -> TokenInfo {
        try read { try $0.verifyToken(token) }
    }

    /// Revokes a token by its id; NOT_FOUND when there is no such token. Revoking twice is harmless.
    @discardableResult
    public func revokeToken(id: TokenID, audit event: AuditEvent? = nil) throws(CofferError) -> TokenInfo {
        try write { writer in
            let info = try writer.revokeToken(id: id)
            if var event {
                event.workflow = info.workflow
                try writer.appendAudit(event)
            }
            return info
        }
    }

    /// Removes the records of tokens that expired before `cutoff`, revoked or not; returns how many.
    @discardableResult
    public func purgeTokens(expiredBefore cutoff: Date) throws(CofferError) -> Int {
        try write { try $0.purgeTokens(expiredBefore: cutoff) }
    }

    /// Every token's record, sorted by id; never a token.
    public func listTokens() throws(CofferError) -> [TokenInfo] { try read { try $0.listTokens() } }

    /// Appends events in one transaction.
    public func appendAudit(_ events: [AuditEvent]) throws(CofferError) {
        guard !events.isEmpty else { return }
        try write { writer in for event in events { try writer.appendAudit(event) } }
    }

    /// Audit records after `sequence`, oldest first, at most `limit`: the records waiting for a fold are folded
    /// first.
    public func auditRecords(after sequence: UInt64 = 0, limit: Int = 1000) throws(CofferError) -> [AuditEvent] {
        try write { writer in
            try writer.foldAudit([])
            return try writer.reader.auditPage(after: sequence, limit: limit).records
        }
    }

    /// Counts and sizes; nothing secret.
    public func status() throws(CofferError) -> StoreStatus {
        let usage: MapUsage
        do { usage = try env.usage() } catch { throw failure(error) }
        return try read(tolerant: true) { reader in
            let txn = reader.txn
            // The metadata of the same snapshot as the counts (another process may serve the store).
            guard case .format2(let record)? = try tables.meta.read(keys: keys, txn) else {
                throw CofferError(.dataLoss, "the store's metadata record is missing")
            }
            return StoreStatus(
                formatVersion: record.formatVersion,
                keyID: keys.keyID,
                created: Date(unixMillis: record.createdUnixMs),
                connections: try tables.connections.count(txn),
                grants: try tables.grants.activeByConnection(txn).values.reduce(0) { $0 + $1.count },
                tokens: try tables.tokens.all(txn).count,
                auditRecords: Int(record.auditCount)
                    + Int(record.summaries.first { $0.table == AuthenticatedTable.auditPending.rawValue }?.count ?? 0),
                mapSize: env.mapSize,
                usedBytes: usage.used
            )
        }
    }
}

import CofferCore
import CofferCrypto
import Foundation

/// What may be changed in one write transaction of the store; everything a `StoreReader` reads, too. Valid
/// only inside the closure it was handed to.
public struct StoreWriter {
    let store: ConnectionStore
    let txn: Transaction

    var tables: ConnectionStore.Tables { store.tables }
    var now: Date { store.now }

    /// Reads within this transaction: they see its own changes.
    public var reader: StoreReader { StoreReader(store: store, txn: txn) }

    /// Runs `body` in a transaction nested in this one: its changes are kept when it returns and undone when
    /// it throws, while this transaction goes on. Lets many requests share one commit and still fail alone.
    public func nested<R>(_ body: (StoreWriter) throws -> R) throws -> R {
        try txn.nested { child in try body(StoreWriter(store: store, txn: child)) }
    }

    /// Runs `body`, then writes `event` (when given) as its record in this same transaction.
    func audited<R>(_ event: AuditEvent?, _ body: (StoreWriter) throws -> R) throws -> R {
        let result = try body(self)
        if let event { try appendAudit(event) }
        return result
    }

    // MARK: Connections

    /// Creates a connection; ALREADY_EXISTS if it exists. Grants left by an earlier connection of the same
    /// name go, so a new connection starts ungranted.
    public func put(
        _ ref: ConnectionRef,
        _ values: OpenedFields,
        shape: ConnectionShape = .untyped
    ) throws
        -> ConnectionInfo
    {
        guard !values.values.isEmpty || !shape.publicFields.isEmpty else {
            throw CofferError(.invalidArgument, "a connection needs at least one field")
        }
        if try tables.connections.record(ref, txn) != nil {
            throw CofferError(.alreadyExists, "connection \(ref) already exists; overwrite it to change its values")
        }
        let time = now.unixMillis
        let record = ConnectionTable.seal(
            ref,
            values.values,
            shape: shape,
            version: 1,
            incarnation: SecureRandom.bytes(KeyRing.incarnationLength),
            created: time,
            updated: time,
            keys: store.keys
        )
        try tables.connections.write(ref, record, txn)
        try tables.grants.clear(ref, txn)
        try recordChange(.connectionCreated, connection: ref, version: 1)
        return ConnectionTable.info(ref, record, grants: [])
    }

    /// Replaces all of a connection's fields and raises its version by one. NOT_FOUND when it does not exist,
    /// FAILED_PRECONDITION when `expectedVersion` is given and is not the current version.
    public func overwrite(
        _ ref: ConnectionRef,
        _ values: OpenedFields,
        shape: ConnectionShape = .untyped,
        expectedVersion: UInt64?
    ) throws
        -> ConnectionInfo
    {
        guard !values.values.isEmpty || !shape.publicFields.isEmpty else {
            throw CofferError(.invalidArgument, "a connection needs at least one field")
        }
        let current = try tables.connections.existing(ref, txn)
        try Self.check(ref, current, expectedVersion: expectedVersion)
        let record = ConnectionTable.seal(
            ref,
            values.values,
            shape: shape,
            version: current.version + 1,
            incarnation: ConnectionTable.incarnation(of: current) ?? SecureRandom.bytes(KeyRing.incarnationLength),
            created: current.createdUnixMs,
            updated: now.unixMillis,
            keys: store.keys
        )
        try tables.connections.write(ref, record, txn)
        try recordChange(.connectionChanged, connection: ref, version: record.version)
        return ConnectionTable.info(ref, record, grants: try tables.grants.active(ref, txn))
    }

    /// The shape of the connection at `ref` (NOT_FOUND when there is none), for a write that is checked against
    /// what it replaces.
    public func shape(of ref: ConnectionRef) throws -> ConnectionShape {
        try ConnectionTable.shape(ref, try tables.connections.existing(ref, txn))
    }

    /// Changes some of a connection's fields and raises its version by one: `change` gets the current values
    /// (decrypted in memory) and returns the whole new connection, which is encrypted again for the new version.
    /// NOT_FOUND when it does not exist, FAILED_PRECONDITION when `expectedVersion` is given and is not the
    /// current version.
    public func update(
        _ ref: ConnectionRef,
        expectedVersion: UInt64?,
        _ change: (ConnectionValues) throws -> (OpenedFields, ConnectionShape)
    ) throws -> ConnectionInfo {
        let current = try tables.connections.existing(ref, txn)
        try Self.check(ref, current, expectedVersion: expectedVersion)
        let (values, shape) = try change(try ConnectionTable.open(ref, current, keys: store.keys))
        return try overwrite(ref, values, shape: shape, expectedVersion: current.version)
    }

    /// Deletes a connection and turns its grants into tombstones. NOT_FOUND when it does not exist,
    /// FAILED_PRECONDITION when `expectedVersion` is given and is not the current version.
    public func delete(_ ref: ConnectionRef, expectedVersion: UInt64?) throws {
        let current = try tables.connections.existing(ref, txn)
        try Self.check(ref, current, expectedVersion: expectedVersion)
        try tables.connections.remove(ref, txn)
        try tables.grants.markDeleted(ref, now: now, txn)
        try recordChange(.connectionDeleted, connection: ref, version: current.version)
    }

    private static func check(
        _ ref: ConnectionRef,
        _ record: Coffer_Storage_V1_ConnectionRecord,
        expectedVersion: UInt64?
    ) throws(CofferError) {
        if let expectedVersion, expectedVersion != record.version {
            throw CofferError(
                .failedPrecondition,
                "connection \(ref) is at version \(record.version), not the expected \(expectedVersion)"
            )
        }
    }

    // MARK: Grants

    /// Lets `workflow` get `ref`. NOT_FOUND when the connection does not exist; false when the grant was
    /// already there.
    public func grant(_ workflow: WorkflowName, _ ref: ConnectionRef) throws -> Bool {
        _ = try tables.connections.existing(ref, txn)
        let created = try tables.grants.grant(ref, workflow, now: now, txn)
        if created { try recordChange(.grantAdded, connection: ref, workflow: workflow) }
        return created
    }

    /// Takes a grant away. NOT_FOUND when `workflow` holds no grant for `ref`.
    public func revoke(_ workflow: WorkflowName, _ ref: ConnectionRef) throws {
        guard try tables.grants.revoke(ref, workflow, txn) else {
            throw CofferError(.notFound, "workflow \(workflow) holds no grant for connection \(ref)")
        }
        try recordChange(.grantRevoked, connection: ref, workflow: workflow)
    }

    // MARK: Tokens

    /// Issues a token for `workflow` that expires after `ttl`.
    public func issueToken(for workflow: WorkflowName, ttl: Duration, runID: RunID?) throws -> IssuedToken {
        let maxTTL = store.configuration.limits.maxTokenTTL
        guard ttl > .zero else {
            throw CofferError(.invalidArgument, "a token's time to live must be positive")
        }
        guard ttl <= maxTTL else {
            throw CofferError(.invalidArgument, "a token's time to live may be at most \(maxTTL.wholeSeconds) seconds")
        }
        let material = TokenMaterial.generate()
        let created = now.unixMillis
        var record = Coffer_Storage_V1_TokenRecord()
        record.workflow = workflow.rawValue
        record.digest = Data(store.keys.tokenDigest(material.token))
        record.createdUnixMs = created
        record.expiresUnixMs = created + max(ttl.milliseconds, 1)
        record.runID = runID?.rawValue ?? ""
        record.generation = store.keys.active.number
        try tables.tokens.insert(material.id, record, txn)
        try recordChange(.tokenIssued, workflow: workflow, tokenID: material.id)
        return IssuedToken(info: try TokenTable.info(material.id, record), token: material.token)
    }

    /// Revokes a token by its id; NOT_FOUND when there is no such token. Revoking twice is harmless.
    public func revokeToken(id: TokenID) throws -> TokenInfo {
        let (info, revoked) = try tables.tokens.revoke(id, now: now, txn)
        if revoked { try recordChange(.tokenRevoked, workflow: info.workflow, tokenID: id) }
        return info
    }

    /// Removes the records of tokens that expired before `cutoff`, revoked or not; returns how many. Such a
    /// token can no longer be used, and its id stays in the audit records that name it.
    public func purgeTokens(expiredBefore cutoff: Date) throws -> Int {
        try tables.tokens.purge(expiredBefore: cutoff, txn)
    }

    // MARK: Audit

    /// Writes `event` as the next record of the trail, in this transaction: it waits, with this change, for
    /// the next fold into the audit chain, which gives it its sequence number.
    public func appendAudit(_ event: AuditEvent) throws {
        try tables.audit.appendPending(event, order: store.auditOrder.next(), txn)
    }

    /// Moves `journaled` (records from the journal, in its order) and every record waiting in the store into the
    /// audit chain; `journalThrough` is the journal number of the last of `journaled`, which a fold repeated after
    /// a crash skips to.
    /// `pendingThrough` bounds the records of changes that join them: those taken after a journal record still
    /// waiting wait with it.
    func foldAudit(
        _ journaled: [(order: UInt64, event: AuditEvent)],
        journalThrough: UInt64? = nil,
        pendingThrough: UInt64 = .max
    ) throws {
        let chain = txn.ledger?.audit ?? store.currentMetadata.audit
        txn.ledger?.audit = try tables.audit.fold(
            journaled,
            pendingThrough: pendingThrough,
            chain: chain,
            keys: store.keys,
            txn
        )
        if let journalThrough {
            txn.ledger?.editMetadata { $0.journalFolded = max($0.journalFolded, journalThrough) }
        }
    }
}

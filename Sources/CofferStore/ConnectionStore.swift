import CofferCore
import CofferCrypto
import Foundation
import SwiftProtobuf

/// The sealed connection store: connections, grants and workflow tokens in one LMDB environment.
///
/// Values arrive sealed to the daemon's public key, are opened here and encrypted again at rest with a key
/// derived from the master key, bound to their connection, field and record version. Every method is
/// synchronous and may block on the disk or on another writer: call it from a thread that may block, never
/// from an event loop. Writes are durable when they return (LMDB syncs on commit).
public final class ConnectionStore: Sendable {
    /// The layout this build reads and writes.
    public static let formatVersion: UInt32 = 1

    /// The keys derived from the master key; the public key is what clients seal to.
    public let keys: KeyRing
    public let configuration: StoreConfiguration

    // Internal rather than private so that tests can tamper with raw records.
    let env: Environment
    let meta: Database
    let connections: Database
    let grants: Database
    let tokens: Database
    let audit: Database

    private static let metaKey = Array("meta".utf8)

    private init(configuration: StoreConfiguration, keys: KeyRing) throws(CofferError) {
        self.configuration = configuration
        self.keys = keys
        let directory = configuration.directory
        do {
            env = try Environment(directory: directory, mapSize: configuration.mapSize, maxDatabases: 8)
        } catch let error as LMDBError where error.code == EBUSY {
            throw CofferError(.failedPrecondition, "the store in \(directory) is already open in this process",
                              cause: error)
        } catch {
            throw CofferError(.failedPrecondition, "cannot open the store in \(directory)", cause: error)
        }
        do {
            meta = try env.database("meta")
            connections = try env.database("connections")
            grants = try env.database("grants")
            tokens = try env.database("tokens")
            audit = try env.database("audit")
        } catch {
            env.close()
            throw Self.mapError(error, mapSize: configuration.mapSize)
        }
    }

    /// Creates a new store in `configuration.directory` for `keys`; refuses one that holds a store already.
    public static func create(_ configuration: StoreConfiguration, keys: KeyRing) throws(CofferError)
        -> ConnectionStore
    {
        let store = try ConnectionStore(configuration: configuration, keys: keys)
        do throws(CofferError) {
            try store.writing { txn in
                if try txn.get(store.meta, metaKey) != nil {
                    throw CofferError(.alreadyExists,
                                      "\(configuration.directory) already holds a Coffer store; it is never replaced")
                }
                var record = Coffer_Storage_V1_Metadata()
                record.formatVersion = formatVersion
                record.keyID = Data(keys.keyID.bytes)
                record.keyCheck = Data(keys.keyCheckValue)
                record.createdUnixMs = store.nowMillis()
                try txn.put(store.meta, metaKey, try record.serializedBytes())
            }
        } catch {
            store.close()
            throw error
        }
        return store
    }

    /// Opens an existing store, refusing it when `keys` come from another master key or its format is unknown.
    public static func open(_ configuration: StoreConfiguration, keys: KeyRing) throws(CofferError)
        -> ConnectionStore
    {
        let store = try ConnectionStore(configuration: configuration, keys: keys)
        do throws(CofferError) {
            let record = try store.reading { txn -> Coffer_Storage_V1_Metadata? in
                guard let bytes = try txn.get(store.meta, metaKey) else { return nil }
                return try Coffer_Storage_V1_Metadata(serializedBytes: bytes)
            }
            guard let record else {
                throw CofferError(.failedPrecondition,
                                  "\(configuration.directory) holds no Coffer store; create one with: cofferd init --data-dir \(configuration.directory)")
            }
            guard record.formatVersion == formatVersion else {
                throw CofferError(.failedPrecondition,
                                  "the store in \(configuration.directory) has format version \(record.formatVersion); this cofferd reads version \(formatVersion)")
            }
            let storedID = KeyID(bytes: record.keyID).map(\.hex) ?? "(malformed)"
            guard record.keyID == Data(keys.keyID.bytes), keys.matchesKeyCheck(Array(record.keyCheck)) else {
                throw CofferError(.failedPrecondition,
                                  "the master key does not match the store in \(configuration.directory): the store was created with key \(storedID), the key given is \(keys.keyID)")
            }
        } catch {
            store.close()
            throw error
        }
        return store
    }

    /// Closes the store after the transactions in flight end. Calls after it fail with UNAVAILABLE.
    public func close() { env.close() }

    deinit { env.close() }

    // MARK: Connections

    /// Creates a connection; fails with ALREADY_EXISTS if it exists.
    @discardableResult
    public func put(_ ref: ConnectionRef, fields: [FieldName: SealedValue], audit event: AuditEvent? = nil)
        throws(CofferError) -> ConnectionInfo
    {
        let values = try openSealed(fields)
        return try writing { txn in
            let key = Self.connectionKey(ref)
            if try txn.get(connections, key) != nil {
                throw CofferError(.alreadyExists, "connection \(ref) already exists; overwrite it to change its values")
            }
            let now = nowMillis()
            let record = sealRecord(ref, values, version: 1, created: now, updated: now)
            try txn.put(connections, key, try record.serializedBytes())
            // Grants left by an earlier connection of this name stay gone: a new connection starts ungranted.
            for (grantKey, _) in try grantEntries(txn, ref) { try txn.delete(grants, grantKey) }
            try appendAudit(txn, event)
            return Self.info(ref, record, grants: [])
        }
    }

    /// Replaces all of a connection's fields and raises its version by one. Fails with NOT_FOUND when it does
    /// not exist and FAILED_PRECONDITION when `expectedVersion` is given and is not the current version.
    @discardableResult
    public func overwrite(_ ref: ConnectionRef, fields: [FieldName: SealedValue], expectedVersion: UInt64? = nil,
                          audit event: AuditEvent? = nil) throws(CofferError) -> ConnectionInfo
    {
        let values = try openSealed(fields)
        return try writing { txn in
            let key = Self.connectionKey(ref)
            let current = try existingRecord(txn, ref)
            try Self.check(ref, current, expectedVersion: expectedVersion)
            let record = sealRecord(ref, values, version: current.version + 1,
                                    created: current.createdUnixMs, updated: nowMillis())
            try txn.put(connections, key, try record.serializedBytes())
            try appendAudit(txn, event)
            return Self.info(ref, record, grants: try activeGrants(txn, ref))
        }
    }

    /// Deletes a connection and revokes its grants. Fails with NOT_FOUND when it does not exist and
    /// FAILED_PRECONDITION when `expectedVersion` is given and is not the current version.
    public func delete(_ ref: ConnectionRef, expectedVersion: UInt64? = nil, audit event: AuditEvent? = nil)
        throws(CofferError)
    {
        try writing { txn in
            let current = try existingRecord(txn, ref)
            try Self.check(ref, current, expectedVersion: expectedVersion)
            try txn.delete(connections, Self.connectionKey(ref))
            // Each grant becomes a tombstone: it authorises nothing and is not listed, but its workflow is told
            // NOT_FOUND rather than PERMISSION_DENIED.
            let now = nowMillis()
            for (grantKey, var grant) in try grantEntries(txn, ref) where grant.connectionDeletedUnixMs == 0 {
                grant.connectionDeletedUnixMs = now
                try txn.put(grants, grantKey, try grant.serializedBytes())
            }
            try appendAudit(txn, event)
        }
    }

    /// A connection's values for `workflow`. PERMISSION_DENIED when the workflow holds no grant for it,
    /// whether or not it exists, so that the answer reveals nothing to an ungranted caller; NOT_FOUND when
    /// it was granted and has since been deleted.
    public func get(_ ref: ConnectionRef, for workflow: WorkflowName) throws(CofferError) -> ConnectionValues {
        let record = try reading { txn -> Coffer_Storage_V1_ConnectionRecord in
            let grantBytes = try txn.get(grants, Self.grantKey(ref, workflow))
            guard let grantBytes else {
                throw CofferError(.permissionDenied, "workflow \(workflow) is not granted connection \(ref)")
            }
            let grant = try Coffer_Storage_V1_GrantRecord(serializedBytes: grantBytes)
            guard grant.connectionDeletedUnixMs == 0, let bytes = try txn.get(connections, Self.connectionKey(ref))
            else {
                throw CofferError(.notFound, "connection \(ref) was deleted")
            }
            return try Coffer_Storage_V1_ConnectionRecord(serializedBytes: bytes)
        }
        return try openRecord(ref, record)
    }

    /// Every connection's metadata, sorted by type and name; never a value.
    public func list() throws(CofferError) -> [ConnectionInfo] {
        try reading { txn in
            var grantsByConnection: [ConnectionRef: [WorkflowName]] = [:]
            try txn.scan(grants) { key, value in
                let grant = try Coffer_Storage_V1_GrantRecord(serializedBytes: value)
                if grant.connectionDeletedUnixMs == 0 {
                    let (ref, workflow) = try Self.parseGrantKey(key)
                    grantsByConnection[ref, default: []].append(workflow)
                }
                return true
            }
            var result: [ConnectionInfo] = []
            try txn.scan(connections) { key, value in
                let ref = try ConnectionRef(parsing: String(decoding: key, as: UTF8.self))
                let record = try Coffer_Storage_V1_ConnectionRecord(serializedBytes: value)
                result.append(Self.info(ref, record, grants: (grantsByConnection[ref] ?? []).sorted()))
                return true
            }
            return result.sorted { $0.ref < $1.ref }
        }
    }

    /// One connection's metadata; NOT_FOUND when it does not exist.
    public func info(_ ref: ConnectionRef) throws(CofferError) -> ConnectionInfo {
        try reading { txn in
            Self.info(ref, try existingRecord(txn, ref), grants: try activeGrants(txn, ref))
        }
    }

    // MARK: Grants

    /// Lets `workflow` get `ref`. NOT_FOUND when the connection does not exist. Returns false when the grant
    /// was already there.
    @discardableResult
    public func grant(_ workflow: WorkflowName, _ ref: ConnectionRef, audit event: AuditEvent? = nil)
        throws(CofferError) -> Bool
    {
        try writing { txn in
            _ = try existingRecord(txn, ref)
            let key = Self.grantKey(ref, workflow)
            if let bytes = try txn.get(grants, key),
               try Coffer_Storage_V1_GrantRecord(serializedBytes: bytes).connectionDeletedUnixMs == 0
            {
                try appendAudit(txn, event)
                return false
            }
            var record = Coffer_Storage_V1_GrantRecord()
            record.createdUnixMs = nowMillis()
            try txn.put(grants, key, try record.serializedBytes())
            try appendAudit(txn, event)
            return true
        }
    }

    /// Takes a grant away. NOT_FOUND when `workflow` holds no grant for `ref`.
    public func revoke(_ workflow: WorkflowName, _ ref: ConnectionRef, audit event: AuditEvent? = nil)
        throws(CofferError)
    {
        try writing { txn in
            guard try txn.delete(grants, Self.grantKey(ref, workflow)) else {
                throw CofferError(.notFound, "workflow \(workflow) holds no grant for connection \(ref)")
            }
            try appendAudit(txn, event)
        }
    }

    /// Whether `workflow` may get `ref` now.
    public func isGranted(_ workflow: WorkflowName, _ ref: ConnectionRef) throws(CofferError) -> Bool {
        try reading { txn in
            guard let bytes = try txn.get(grants, Self.grantKey(ref, workflow)) else { return false }
            return try Coffer_Storage_V1_GrantRecord(serializedBytes: bytes).connectionDeletedUnixMs == 0
        }
    }

    // MARK: Tokens

    /// Issues a token for `workflow` that expires after `ttl`. The token is returned once; only its keyed
    /// hash is stored.
    public func issueToken(for workflow: WorkflowName, ttl: Duration, runID: RunID? = nil, audit event: AuditEvent? = nil)
        throws(CofferError) -> IssuedToken
    {
        guard ttl > .zero else {
            throw CofferError(.invalidArgument, "a token's time to live must be positive")
        }
        guard ttl <= configuration.limits.maxTokenTTL else {
            throw CofferError(.invalidArgument,
                              "a token's time to live may be at most \(configuration.limits.maxTokenTTL.components.seconds) seconds")
        }
        let material = TokenMaterial.generate()
        let created = nowMillis()
        let (seconds, attoseconds) = ttl.components
        let ttlMillis = seconds * 1000 + attoseconds / 1_000_000_000_000_000
        var record = Coffer_Storage_V1_TokenRecord()
        record.workflow = workflow.rawValue
        record.digest = Data(keys.tokenDigest(material.token))
        record.createdUnixMs = created
        record.expiresUnixMs = created + max(ttlMillis, 1)
        record.runID = runID?.rawValue ?? ""
        try writing { txn in
            let key = Array(material.id.utf8)
            guard try txn.get(tokens, key) == nil else {
                // 64 random bits colliding: vanishingly rare, but never overwrite another token's record.
                throw CofferError(.internal, "token id collision; issue the token again")
            }
            try txn.put(tokens, key, try record.serializedBytes())
            var event = event
            event?.tokenID = material.id
            try appendAudit(txn, event)
        }
        return IssuedToken(info: try Self.tokenInfo(id: material.id, record), token: material.token)
    }

    /// The record of a presented token, if it is genuine, unexpired and unrevoked; UNAUTHENTICATED if not.
    /// The comparison with the stored hash takes constant time.
    public func verifyToken(_ token: SecretBytes) throws(CofferError) -> TokenInfo {
        let invalid = CofferError(.unauthenticated, "the token is not valid")
        guard let id = TokenMaterial.id(of: token) else { throw invalid }
        let record = try reading { txn -> Coffer_Storage_V1_TokenRecord? in
            try txn.get(tokens, Array(id.utf8)).map { try Coffer_Storage_V1_TokenRecord(serializedBytes: $0) }
        }
        // Hash even when the id is unknown, so the two failures take the same time. The digest is what the
        // store keeps on disk, not a secret; the comparison is constant-time all the same.
        let digest = keys.tokenDigest(token)
        guard let record, ConstantTime.equals(digest, Array(record.digest)) else { throw invalid }
        if record.revokedUnixMs != 0 {
            throw CofferError(.unauthenticated, "the token was revoked")
        }
        if nowMillis() >= record.expiresUnixMs {
            throw CofferError(.unauthenticated, "the token has expired")
        }
        return try Self.tokenInfo(id: id, record)
    }

    /// Revokes a token by its id; NOT_FOUND when there is no such token. Revoking twice is harmless.
    @discardableResult
    public func revokeToken(id: String, audit event: AuditEvent? = nil) throws(CofferError) -> TokenInfo {
        try writing { txn in
            let key = Array(id.utf8)
            guard id.utf8.count <= 64, let bytes = try txn.get(tokens, key) else {
                throw CofferError(.notFound, "no token with id \(Validation.quoted(id))")
            }
            var record = try Coffer_Storage_V1_TokenRecord(serializedBytes: bytes)
            if record.revokedUnixMs == 0 {
                record.revokedUnixMs = nowMillis()
                try txn.put(tokens, key, try record.serializedBytes())
            }
            var event = event
            event?.workflow = record.workflow
            try appendAudit(txn, event)
            return try Self.tokenInfo(id: id, record)
        }
    }

    /// Removes the records of tokens that expired before `cutoff`, revoked or not; returns how many. Such a
    /// token can no longer be used, and its id stays in the audit records that name it.
    @discardableResult
    public func purgeTokens(expiredBefore cutoff: Date) throws(CofferError) -> Int {
        let cutoffMillis = cutoff.unixMillis
        return try writing { txn in
            var expired: [[UInt8]] = []
            try txn.scan(tokens) { key, value in
                if try Coffer_Storage_V1_TokenRecord(serializedBytes: value).expiresUnixMs < cutoffMillis {
                    expired.append(key)
                }
                return true
            }
            for key in expired { try txn.delete(tokens, key) }
            return expired.count
        }
    }

    /// Every token's record, sorted by id; never a token.
    public func listTokens() throws(CofferError) -> [TokenInfo] {
        try reading { txn in
            var result: [TokenInfo] = []
            try txn.scan(tokens) { key, value in
                let id = String(decoding: key, as: UTF8.self)
                result.append(try Self.tokenInfo(id: id, try Coffer_Storage_V1_TokenRecord(serializedBytes: value)))
                return true
            }
            return result
        }
    }

    // MARK: Audit

    /// Appends events in one transaction: one fsync for the batch. For the records of requests that change
    /// nothing (gets, denials); a mutation writes its own record in its own transaction.
    public func appendAudit(_ events: [AuditEvent]) throws(CofferError) {
        guard !events.isEmpty else { return }
        try writing { txn in
            for event in events { try appendAudit(txn, event) }
        }
    }

    /// Audit records after `sequence`, oldest first, at most `limit`.
    public func auditRecords(after sequence: UInt64 = 0, limit: Int = 1000) throws(CofferError) -> [AuditEvent] {
        try reading { txn in
            var result: [AuditEvent] = []
            guard limit > 0 else { return result }
            try txn.scan(audit, from: Self.sequenceKey(sequence &+ 1)) { key, value in
                let entry = try Coffer_Storage_V1_AuditEntry(serializedBytes: value)
                result.append(Self.auditEvent(Self.sequence(key), entry))
                return result.count < limit
            }
            return result
        }
    }

    private func appendAudit(_ txn: Transaction, _ event: AuditEvent?) throws {
        guard let event else { return }
        let bounds = try txn.bounds(audit)
        let next = bounds.map { Self.sequence($0.last) + 1 } ?? 1
        var entry = Coffer_Storage_V1_AuditEntry()
        entry.timeUnixMs = event.time.unixMillis
        entry.socket = event.socket
        entry.operation = event.operation
        entry.connection = event.connection
        entry.workflow = event.workflow
        entry.tokenID = event.tokenID
        entry.runID = event.runID
        entry.peerUid = event.peerUID
        entry.peerPid = event.peerPID
        entry.outcome = Int32(event.outcome)
        try txn.put(audit, Self.sequenceKey(next), try entry.serializedBytes())
        // Sequences are contiguous, since records are dropped only from the front.
        if let first = bounds.map({ Self.sequence($0.first) }) {
            var oldest = first
            while next - oldest + 1 > UInt64(configuration.limits.maxAuditRecords) {
                try txn.delete(audit, Self.sequenceKey(oldest))
                oldest += 1
            }
        }
    }

    private static func sequenceKey(_ sequence: UInt64) -> [UInt8] {
        (0..<8).reversed().map { UInt8(truncatingIfNeeded: sequence >> ($0 * 8)) }
    }

    private static func sequence(_ key: [UInt8]) -> UInt64 {
        key.prefix(8).reduce(0) { $0 << 8 | UInt64($1) }
    }

    private static func auditEvent(_ sequence: UInt64, _ entry: Coffer_Storage_V1_AuditEntry) -> AuditEvent {
        var event = AuditEvent(time: Date(unixMillis: entry.timeUnixMs), socket: entry.socket,
                               operation: entry.operation, peerUID: entry.peerUid, peerPID: entry.peerPid)
        event.sequence = sequence
        event.connection = entry.connection
        event.workflow = entry.workflow
        event.tokenID = entry.tokenID
        event.runID = entry.runID
        event.outcome = Int(entry.outcome)
        return event
    }

    // MARK: Status

    /// Counts and sizes; nothing secret.
    public func status() throws(CofferError) -> StoreStatus {
        try reading { txn in
            func count(_ db: Database) throws -> Int {
                var n = 0
                try txn.scan(db) { _, _ in n += 1; return true }
                return n
            }
            let record = try Coffer_Storage_V1_Metadata(serializedBytes: try txn.get(meta, Self.metaKey) ?? [])
            var activeGrants = 0
            try txn.scan(grants) { _, value in
                if try Coffer_Storage_V1_GrantRecord(serializedBytes: value).connectionDeletedUnixMs == 0 { activeGrants += 1 }
                return true
            }
            return StoreStatus(
                formatVersion: record.formatVersion, keyID: keys.keyID,
                created: Date(unixMillis: record.createdUnixMs),
                connections: try count(connections), grants: activeGrants, tokens: try count(tokens),
                mapSize: env.mapSize, usedBytes: try env.usedBytes())
        }
    }

    // MARK: Internals

    private func nowMillis() -> Int64 {
        configuration.clock().unixMillis
    }

    /// Checks the shape and sizes of a write, then opens every sealed value.
    private func openSealed(_ fields: [FieldName: SealedValue]) throws(CofferError) -> [(FieldName, SecretBytes)] {
        let limits = configuration.limits
        guard !fields.isEmpty else {
            throw CofferError(.invalidArgument, "a connection needs at least one field")
        }
        guard fields.count <= limits.maxFields else {
            throw CofferError(.invalidArgument,
                              "a connection may have at most \(limits.maxFields) fields; this one has \(fields.count)")
        }
        let overhead = SealedValue.overhead
        var total = 0
        for (name, sealed) in fields {
            let size = max(sealed.ciphertext.count - overhead, 0)
            guard size <= limits.maxValueBytes else {
                throw CofferError(.invalidArgument,
                                  "the value of field \(name) is larger than \(limits.maxValueBytes) bytes")
            }
            total += size
        }
        guard total <= limits.maxConnectionBytes else {
            throw CofferError(.invalidArgument,
                              "the values of a connection may total at most \(limits.maxConnectionBytes) bytes")
        }
        var opened: [(FieldName, SecretBytes)] = []
        for (name, sealed) in fields.sorted(by: { $0.key < $1.key }) {
            opened.append((name, try keys.open(sealed, field: name)))
        }
        return opened
    }

    private func sealRecord(_ ref: ConnectionRef, _ values: [(FieldName, SecretBytes)], version: UInt64,
                            created: Int64, updated: Int64) -> Coffer_Storage_V1_ConnectionRecord
    {
        var record = Coffer_Storage_V1_ConnectionRecord()
        record.version = version
        record.createdUnixMs = created
        record.updatedUnixMs = updated
        record.fields = values.map { name, value in
            var field = Coffer_Storage_V1_StoredField()
            field.name = name.rawValue
            let binding = FieldBinding(connection: ref, field: name, recordVersion: version)
            field.ciphertext = Data(keys.sealAtRest(value, binding: binding))
            return field
        }
        return record
    }

    private func openRecord(_ ref: ConnectionRef, _ record: Coffer_Storage_V1_ConnectionRecord) throws(CofferError)
        -> ConnectionValues
    {
        var fields: [FieldName: SecretBytes] = [:]
        for field in record.fields {
            let name: FieldName
            do { name = try FieldName(field.name) } catch {
                throw CofferError(.dataLoss, "connection \(ref) has a malformed field name", cause: error)
            }
            let binding = FieldBinding(connection: ref, field: name, recordVersion: record.version)
            fields[name] = try keys.openAtRest(Array(field.ciphertext), binding: binding)
        }
        return ConnectionValues(ref: ref, version: record.version, fields: fields)
    }

    private func existingRecord(_ txn: Transaction, _ ref: ConnectionRef) throws -> Coffer_Storage_V1_ConnectionRecord {
        guard let bytes = try txn.get(connections, Self.connectionKey(ref)) else {
            throw CofferError(.notFound, "no connection named \(ref)")
        }
        return try Coffer_Storage_V1_ConnectionRecord(serializedBytes: bytes)
    }

    private func grantEntries(_ txn: Transaction, _ ref: ConnectionRef) throws
        -> [([UInt8], Coffer_Storage_V1_GrantRecord)]
    {
        var entries: [([UInt8], Coffer_Storage_V1_GrantRecord)] = []
        try txn.scan(grants, prefix: Self.connectionKey(ref) + [0]) { key, value in
            entries.append((key, try Coffer_Storage_V1_GrantRecord(serializedBytes: value)))
            return true
        }
        return entries
    }

    private func activeGrants(_ txn: Transaction, _ ref: ConnectionRef) throws -> [WorkflowName] {
        try grantEntries(txn, ref)
            .filter { $0.1.connectionDeletedUnixMs == 0 }
            .map { try Self.parseGrantKey($0.0).1 }
            .sorted()
    }

    private static func check(_ ref: ConnectionRef, _ record: Coffer_Storage_V1_ConnectionRecord, expectedVersion: UInt64?)
        throws(CofferError)
    {
        if let expectedVersion, expectedVersion != record.version {
            throw CofferError(.failedPrecondition,
                              "connection \(ref) is at version \(record.version), not the expected \(expectedVersion)")
        }
    }

    private static func connectionKey(_ ref: ConnectionRef) -> [UInt8] { Array(ref.description.utf8) }

    private static func grantKey(_ ref: ConnectionRef, _ workflow: WorkflowName) -> [UInt8] {
        connectionKey(ref) + [0] + Array(workflow.rawValue.utf8)
    }

    private static func parseGrantKey(_ key: [UInt8]) throws -> (ConnectionRef, WorkflowName) {
        guard let nul = key.firstIndex(of: 0) else {
            throw CofferError(.dataLoss, "a grant record has a malformed key")
        }
        let ref = try ConnectionRef(parsing: String(decoding: key[..<nul], as: UTF8.self))
        let workflow = try WorkflowName(String(decoding: key[(nul + 1)...], as: UTF8.self))
        return (ref, workflow)
    }

    private static func info(_ ref: ConnectionRef, _ record: Coffer_Storage_V1_ConnectionRecord, grants: [WorkflowName])
        -> ConnectionInfo
    {
        ConnectionInfo(
            ref: ref,
            fields: record.fields.compactMap { try? FieldName($0.name) },
            version: record.version,
            created: Date(unixMillis: record.createdUnixMs),
            updated: Date(unixMillis: record.updatedUnixMs),
            grants: grants)
    }

    private static func tokenInfo(id: String, _ record: Coffer_Storage_V1_TokenRecord) throws(CofferError) -> TokenInfo {
        TokenInfo(
            id: id,
            workflow: try WorkflowName(record.workflow),
            runID: record.runID.isEmpty ? nil : try RunID(record.runID),
            created: Date(unixMillis: record.createdUnixMs),
            expires: Date(unixMillis: record.expiresUnixMs),
            revoked: record.revokedUnixMs == 0 ? nil : Date(unixMillis: record.revokedUnixMs))
    }

    private func reading<R>(_ body: (Transaction) throws -> R) throws(CofferError) -> R {
        do { return try env.read(body) } catch { throw Self.mapError(error, mapSize: configuration.mapSize) }
    }

    private func writing<R>(_ body: (Transaction) throws -> R) throws(CofferError) -> R {
        do { return try env.write(body) } catch { throw Self.mapError(error, mapSize: configuration.mapSize) }
    }

    /// The one place where lower-level failures become `CofferError`s; their detail stays in `cause`.
    private static func mapError(_ error: any Error, mapSize: Int) -> CofferError {
        switch error {
        case let error as CofferError:
            return error
        case let error as LMDBError where error.isMapFull:
            return CofferError(.resourceExhausted,
                               "the store is full: its map size of \(mapSize / (1024 * 1024)) MiB is used up; restart cofferd with a larger --map-size",
                               cause: error)
        case let error as LMDBError where error.code == EINVAL && error.operation.contains("closed"):
            return CofferError(.unavailable, "the store is closed", cause: error)
        case is SwiftProtobufError, is BinaryDecodingError:
            return CofferError(.dataLoss, "a stored record is malformed", cause: error)
        default:
            return CofferError(.internal, "storage error", cause: error)
        }
    }
}

extension Date {
    /// The time `unixMillis` milliseconds after the Unix epoch, as stored records and the wire count it.
    public init(unixMillis: Int64) { self.init(timeIntervalSince1970: TimeInterval(unixMillis) / 1000) }

    /// Whole milliseconds since the Unix epoch, rounded down.
    public var unixMillis: Int64 { Int64((timeIntervalSince1970 * 1000).rounded(.down)) }
}

import CofferCore
import CofferCrypto
import Foundation

// Key generations: a rotation makes a new one active at once (the metadata record says which, in the same
// transaction as everything else), the re-encryption moves every record to it in batches, each batch saving
// its cursor in the metadata record of its own transaction, and an old generation is retired only when
// nothing stored or live depends on it.

/// The most generations a store keeps unretired: each holds four keys in guarded memory.
let maxLiveGenerations = 16

/// What one batch of the re-encryption did.
public struct ReencryptionStep: Sendable {
    /// Records looked at, and of those, records written again under the active generation.
    public var visited: Int
    public var rewritten: Int
    /// Fields encrypted again.
    public var fields: Int
    /// True when every table has been gone through since the last rotation.
    public var done: Bool
}

extension StoreWriter {
    /// The metadata record as this transaction will commit it so far.
    var metadata: Coffer_Storage_V1_Metadata {
        txn.ledger?.metadata(from: store.currentMetadata) ?? store.currentMetadata
    }

    func editMetadata(_ edit: @escaping (inout Coffer_Storage_V1_Metadata) -> Void) throws {
        guard let ledger = txn.ledger else {
            throw CofferError(.internal, "key generations change only in an authenticated write")
        }
        ledger.editMetadata(edit)
    }

    /// RotateKey: makes a new generation active, marks the one before superseded (its sealing key is taken
    /// for the grace period) and starts the re-encryption from the first record. FAILED_PRECONDITION when
    /// too many generations are unretired.
    public func rotateKey() throws -> KeyGenerationInfo {
        guard !store.isReplicated else {
            throw CofferError(
                .failedPrecondition,
                "key generations cannot change in a cluster yet: every node would have to follow at once"
            )
        }
        let current = metadata
        guard current.activeGeneration == store.keys.active.number else {
            // A rotation earlier in this same commit: the next one sees it.
            throw CofferError(.unavailable, "a key rotation is being committed; try again")
        }
        let live = current.generations.filter { $0.retiredUnixMs == 0 }
        guard live.count < maxLiveGenerations else {
            throw CofferError(
                .failedPrecondition,
                "\(live.count) key generations are not retired, the most a store keeps; retire old ones first (coffer key status)"
            )
        }
        let number = (current.generations.map(\.number).max() ?? 1) + 1
        let time = now.unixMillis
        let generation = store.keys.with(generations: [number], active: number).active
        var record = Coffer_Storage_V1_KeyGenerationRecord()
        record.number = number
        record.createdUnixMs = time
        record.keyID = Data(generation.keyID.bytes)
        let previous = current.activeGeneration
        let sealedUntil = time + store.configuration.sealedKeyGrace.milliseconds
        try editMetadata { metadata in
            for index in metadata.generations.indices where metadata.generations[index].number == previous {
                metadata.generations[index].supersededUnixMs = time
                metadata.generations[index].sealedWritesUntilUnixMs = sealedUntil
            }
            metadata.generations.append(record)
            metadata.activeGeneration = number
            metadata.rotation = AuthenticatedTable.allCases.map { table in
                var cursor = Coffer_Storage_V1_RotationCursor()
                cursor.table = table.rawValue
                return cursor
            }
        }
        return KeyGenerationInfo(
            number: number,
            keyID: generation.keyID,
            state: .active,
            created: Date(unixMillis: time)
        )
    }

    /// RetireKey: retires generation `number`, which must be superseded, past its grace period for sealed
    /// writes, and depended on by no stored record, field or live token. FAILED_PRECONDITION saying what
    /// still uses it otherwise.
    public func retireKey(_ number: UInt32) throws -> KeyGenerationInfo {
        guard !store.isReplicated else {
            throw CofferError(
                .failedPrecondition,
                "key generations cannot change in a cluster yet: every node would have to follow at once"
            )
        }
        let current = metadata
        guard let record = current.generations.first(where: { $0.number == number }) else {
            throw CofferError(.notFound, "the store has no key generation \(number)")
        }
        guard record.retiredUnixMs == 0 else {
            throw CofferError(.failedPrecondition, "key generation \(number) was retired already")
        }
        guard number != current.activeGeneration else {
            throw CofferError(
                .failedPrecondition,
                "key generation \(number) is the active one; rotate the key first (coffer key rotate)"
            )
        }
        let graceEnd = record.sealedWritesUntilUnixMs
        guard now.unixMillis >= graceEnd else {
            throw CofferError(
                .failedPrecondition,
                "values sealed to key generation \(number) are taken until \(Date(unixMillis: graceEnd).formatted(.iso8601)); retire it after that"
            )
        }
        let usage = try KeyUsage.measure(reader, metadata: current)
        var uses: [String] = []
        if let fields = usage.fields[number], fields > 0 { uses.append("\(fields) stored fields") }
        if let records = usage.records[number], records > 0 { uses.append("\(records) records") }
        if let tokens = usage.liveTokens[number], tokens > 0 { uses.append("\(tokens) live tokens") }
        guard uses.isEmpty else {
            throw CofferError(
                .failedPrecondition,
                "key generation \(number) still has \(uses.joined(separator: ", ")); wait for the re-encryption to finish and the tokens to expire, or revoke them"
            )
        }
        let time = now.unixMillis
        try editMetadata { metadata in
            for index in metadata.generations.indices where metadata.generations[index].number == number {
                metadata.generations[index].retiredUnixMs = time
            }
        }
        var info = KeyUsage.info(record, metadata: current, usage: usage, keys: store.keys, now: now)
        info.state = .retired
        info.retired = Date(unixMillis: time)
        return info
    }

    /// One batch of the re-encryption: up to `limit` records after the saved cursor, each written again under
    /// the active generation (its fields re-encrypted) unless it is already; the cursor is saved in this same
    /// transaction, so a crash resumes where the last commit left off.
    public func reencrypt(limit: Int) throws -> ReencryptionStep {
        let current = metadata
        let keys = store.keys
        var step = ReencryptionStep(visited: 0, rewritten: 0, fields: 0, done: !current.rotation.contains { !$0.done })
        guard !step.done else { return step }
        guard current.activeGeneration == keys.active.number else { return step }  // a rotation not yet committed
        let active = keys.active.number
        var cursors = current.rotation
        for index in cursors.indices where !cursors[index].done && step.visited < limit {
            guard let db = tables.authenticated(cursors[index].table) else {
                cursors[index].done = true
                continue
            }
            var batch: [(key: [UInt8], payload: [UInt8], generation: UInt32)] = []
            let after = Array(cursors[index].afterKey)
            let start = cursors[index].afterKey.isEmpty ? [] : after + [0]
            try txn.scanRecordsWithGeneration(db, from: start) { key, payload, generation in
                batch.append((key, payload, generation))
                return step.visited + batch.count < limit
            }
            for record in batch {
                step.visited += 1
                if db.name == AuthenticatedTable.connections.rawValue {
                    let ref = try StoreKeys.parseConnection(record.key)
                    var connection = try Coffer_Storage_V1_ConnectionRecord(serializedBytes: record.payload)
                    let moved = try ConnectionTable.reencrypt(ref, &connection, keys: keys)
                    if moved > 0 || record.generation != active {
                        try txn.putRecord(db, record.key, try connection.serializedBytes())
                        step.rewritten += 1
                        step.fields += moved
                    }
                } else if record.generation != active {
                    try txn.putRecord(db, record.key, record.payload)
                    step.rewritten += 1
                }
            }
            if let last = batch.last, step.visited >= limit {
                cursors[index].afterKey = Data(last.key)
            } else {
                cursors[index].done = true
                cursors[index].afterKey = Data()
            }
        }
        step.done = !cursors.contains { !$0.done }
        let saved = cursors
        try editMetadata { $0.rotation = saved }
        return step
    }
}

extension StoreReader {
    /// Every generation, oldest first, with what each still encrypts, and the re-encryption's progress. A
    /// scan of every record: for an admin's request, not for a hot path.
    public func keyStatus() throws -> KeyStatus {
        let metadata: Coffer_Storage_V1_Metadata
        if let ledger = txn.ledger {
            metadata = ledger.metadata(from: store.currentMetadata)
        } else {
            guard case .format2(let stored)? = try tables.meta.read(keys: store.keys, txn) else {
                throw CofferError(.dataLoss, "the store's metadata record is missing")
            }
            metadata = stored
        }
        let usage = try KeyUsage.measure(self, metadata: metadata)
        let generations = metadata.generations.sorted { $0.number < $1.number }.map {
            KeyUsage.info(
                $0,
                metadata: metadata,
                usage: usage,
                keys: store.keys,
                now: now
            )
        }
        return KeyStatus(
            generations: generations,
            reencryption: ReencryptionProgress(
                done: !metadata.rotation.contains { !$0.done },
                recordsCurrent: usage.current,
                recordsTotal: usage.total
            )
        )
    }
}

/// What depends on each generation: counted by a scan of every authenticated record.
struct KeyUsage {
    var fields: [UInt32: Int] = [:]
    var records: [UInt32: Int] = [:]
    var liveTokens: [UInt32: Int] = [:]
    /// Records entirely under the active generation, and all records.
    var current = 0
    var total = 0

    static func measure(_ reader: StoreReader, metadata: Coffer_Storage_V1_Metadata) throws -> KeyUsage {
        var usage = KeyUsage()
        let keys = reader.store.keys
        let active = metadata.activeGeneration
        let now = reader.now.unixMillis
        for table in AuthenticatedTable.allCases {
            guard let db = reader.tables.authenticated(table.rawValue) else { continue }
            try reader.txn.scanRecordsWithGeneration(db, from: []) { _, payload, generation in
                usage.records[generation, default: 0] += 1
                usage.total += 1
                var isCurrent = generation == active
                switch table {
                case .connections:
                    let record = try Coffer_Storage_V1_ConnectionRecord(serializedBytes: payload)
                    for field in record.fields {
                        let number = keys.generation(ofStored: Array(field.ciphertext)) ?? 0
                        usage.fields[number, default: 0] += 1
                        if number != active { isCurrent = false }
                    }
                case .tokens:
                    let record = try Coffer_Storage_V1_TokenRecord(serializedBytes: payload)
                    if record.revokedUnixMs == 0 && record.expiresUnixMs > now {
                        usage.liveTokens[max(record.generation, 1), default: 0] += 1
                    }
                case .grants, .auditPending, .changes:
                    break
                }
                if isCurrent { usage.current += 1 }
                return true
            }
        }
        return usage
    }

    static func info(
        _ record: Coffer_Storage_V1_KeyGenerationRecord,
        metadata: Coffer_Storage_V1_Metadata,
        usage: KeyUsage,
        keys: KeyRing,
        now: Date
    ) -> KeyGenerationInfo {
        let state: KeyGenerationInfo.State =
            record.retiredUnixMs != 0
            ? .retired : record.number == metadata.activeGeneration ? .active : .decryptOnly
        let keyID =
            KeyID(bytes: record.keyID) ?? keys.generations[record.number]?.keyID
            ?? keys.with(generations: [record.number], active: record.number).keyID
        var sealedUntil: Date?
        if state == .decryptOnly, record.sealedWritesUntilUnixMs > now.unixMillis {
            sealedUntil = Date(unixMillis: record.sealedWritesUntilUnixMs)
        }
        return KeyGenerationInfo(
            number: record.number,
            keyID: keyID,
            state: state,
            created: Date(unixMillis: record.createdUnixMs),
            superseded: record.supersededUnixMs == 0 ? nil : Date(unixMillis: record.supersededUnixMs),
            retired: record.retiredUnixMs == 0 ? nil : Date(unixMillis: record.retiredUnixMs),
            sealedWritesUntil: sealedUntil,
            fields: usage.fields[record.number] ?? 0,
            records: usage.records[record.number] ?? 0,
            liveTokens: usage.liveTokens[record.number] ?? 0
        )
    }
}

extension ConnectionStore.Tables {
    /// The authenticated table with this name.
    func authenticated(_ name: String) -> Database? {
        switch AuthenticatedTable(rawValue: name) {
        case .connections: connections.db
        case .grants: grants.db
        case .tokens: tokens.db
        case .auditPending: audit.pending
        case .changes: changes.db
        case nil: nil
        }
    }
}

extension ConnectionTable {
    /// Encrypts again, under the active generation, every field of `record` that another generation
    /// encrypts; returns how many. The binding (version, incarnation) is unchanged.
    static func reencrypt(
        _ ref: ConnectionRef,
        _ record: inout Coffer_Storage_V1_ConnectionRecord,
        keys: KeyRing
    ) throws(CofferError) -> Int {
        var moved = 0
        for index in record.fields.indices {
            let stored = Array(record.fields[index].ciphertext)
            guard keys.generation(ofStored: stored) != keys.active.number else { continue }
            let name: FieldName
            do { name = try FieldName(record.fields[index].name) } catch {
                throw CofferError(.dataLoss, "connection \(ref) has a malformed field name", cause: error)
            }
            let binding = binding(ref, record, field: name)
            let value = try keys.openAtRest(stored, binding: binding)
            record.fields[index].ciphertext = Data(keys.sealAtRest(value, binding: binding))
            moved += 1
        }
        return moved
    }
}

extension ConnectionStore {
    /// Whether the re-encryption after the last rotation has records left to go through.
    public var reencryptionPending: Bool { currentMetadata.rotation.contains { !$0.done } }

    /// Whether a value sealed to `generation`'s public key is still taken: the active one's always, a
    /// superseded one's until the grace period set at its rotation has passed.
    func acceptsSealed(to generation: KeyGeneration) -> Bool {
        guard let record = currentMetadata.generations.first(where: { $0.number == generation.number }),
            record.retiredUnixMs == 0
        else { return false }
        if record.supersededUnixMs == 0 { return true }
        return now.unixMillis < record.sealedWritesUntilUnixMs
    }

    /// Makes a new key generation active; see `StoreWriter.rotateKey`.
    @discardableResult
    public func rotateKey(audit event: AuditEvent? = nil) throws(CofferError) -> KeyGenerationInfo {
        try write { writer in try writer.audited(event) { try $0.rotateKey() } }
    }

    /// Retires a generation; see `StoreWriter.retireKey`.
    @discardableResult
    public func retireKey(_ number: UInt32, audit event: AuditEvent? = nil) throws(CofferError) -> KeyGenerationInfo {
        try write { writer in try writer.audited(event) { try $0.retireKey(number) } }
    }

    /// Every generation and the re-encryption's progress.
    public func keyStatus() throws(CofferError) -> KeyStatus { try read(tolerant: true) { try $0.keyStatus() } }

    /// Runs the re-encryption to its end, `batch` records a transaction; returns the fields it encrypted
    /// again. (A serving cofferd runs its batches in the commit queue instead.)
    @discardableResult
    public func reencryptAll(batch: Int = 512) throws(CofferError) -> Int {
        var fields = 0
        while reencryptionPending {
            let step = try write { try $0.reencrypt(limit: batch) }
            fields += step.fields
        }
        return fields
    }
}

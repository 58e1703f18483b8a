import CofferCore
import CofferCrypto
import Foundation

/// Connections under `type/name`: each field's value encrypted at rest and bound to its connection, field
/// and record version.
struct ConnectionTable {
    let db: Database

    func record(_ ref: ConnectionRef, _ txn: Transaction) throws -> Coffer_Storage_V1_ConnectionRecord? {
        guard let bytes = try txn.record(db, StoreKeys.connection(ref)) else { return nil }
        return try Coffer_Storage_V1_ConnectionRecord(serializedBytes: bytes)
    }

    /// The record; NOT_FOUND when there is none.
    func existing(_ ref: ConnectionRef, _ txn: Transaction) throws -> Coffer_Storage_V1_ConnectionRecord {
        guard let record = try record(ref, txn) else {
            throw CofferError(.notFound, "no connection named \(ref)")
        }
        return record
    }

    func write(_ ref: ConnectionRef, _ record: Coffer_Storage_V1_ConnectionRecord, _ txn: Transaction) throws {
        try txn.putRecord(db, StoreKeys.connection(ref), try record.serializedBytes())
    }

    @discardableResult
    func remove(_ ref: ConnectionRef, _ txn: Transaction) throws -> Bool {
        try txn.deleteRecord(db, StoreKeys.connection(ref))
    }

    /// Every connection, in key order.
    func all(_ txn: Transaction) throws -> [(ConnectionRef, Coffer_Storage_V1_ConnectionRecord)] {
        var result: [(ConnectionRef, Coffer_Storage_V1_ConnectionRecord)] = []
        try txn.scanRecords(db) { key, value in
            result.append(
                (try StoreKeys.parseConnection(key), try Coffer_Storage_V1_ConnectionRecord(serializedBytes: value))
            )
            return true
        }
        return result
    }

    func count(_ txn: Transaction) throws -> Int {
        var count = 0
        try txn.scan(db) { _, _ in
            count += 1
            return true
        }
        return count
    }

    /// A record holding `values` encrypted at rest for `ref` at `version` of `incarnation`, with `shape`'s public
    /// fields in clear and bound into every value.
    static func seal(
        _ ref: ConnectionRef,
        _ values: [(FieldName, SecretBytes)],
        shape: ConnectionShape = .untyped,
        version: UInt64,
        incarnation: [UInt8],
        created: Int64,
        updated: Int64,
        keys: KeyRing
    ) -> Coffer_Storage_V1_ConnectionRecord {
        var record = Coffer_Storage_V1_ConnectionRecord()
        record.version = version
        record.incarnation = Data(incarnation)
        record.createdUnixMs = created
        record.updatedUnixMs = updated
        record.typeVersion = shape.typeVersion
        record.variant = shape.variant
        record.publicFields = shape.publicFields.sorted { $0.key < $1.key }.map { name, value in
            var field = Coffer_Storage_V1_PublicValue()
            field.name = name.rawValue
            field.value = value
            return field
        }
        let incarnation = self.incarnation(of: record)
        record.fields = values.map { name, value in
            var field = Coffer_Storage_V1_StoredField()
            field.name = name.rawValue
            let binding = FieldBinding(
                connection: ref,
                field: name,
                recordVersion: version,
                incarnation: incarnation,
                shape: shape
            )
            field.ciphertext = Data(keys.sealAtRest(value, binding: binding))
            return field
        }
        return record
    }

    /// Where a field of `record` belongs: what its ciphertext is bound to.
    static func binding(
        _ ref: ConnectionRef,
        _ record: Coffer_Storage_V1_ConnectionRecord,
        field: FieldName
    ) -> FieldBinding {
        FieldBinding(
            connection: ref,
            field: field,
            recordVersion: record.version,
            incarnation: incarnation(of: record),
            shape: (try? shape(ref, record)) ?? .untyped
        )
    }

    /// The record's type version, variant and public fields; DATA_LOSS when a public field's name is malformed.
    static func shape(
        _ ref: ConnectionRef,
        _ record: Coffer_Storage_V1_ConnectionRecord
    ) throws(CofferError) -> ConnectionShape {
        var fields: [FieldName: String] = [:]
        for field in record.publicFields {
            do { fields[try FieldName(field.name)] = field.value } catch {
                throw CofferError(.dataLoss, "connection \(ref) has a malformed field name", cause: error)
            }
        }
        return ConnectionShape(typeVersion: record.typeVersion, variant: record.variant, publicFields: fields)
    }

    /// Decrypts every secret field of a record; DATA_LOSS when one was altered or moved (a public field
    /// changed in storage fails every secret field's check).
    static func open(
        _ ref: ConnectionRef,
        _ record: Coffer_Storage_V1_ConnectionRecord,
        keys: KeyRing
    )
        throws(CofferError) -> ConnectionValues
    {
        let shape = try shape(ref, record)
        let incarnation = incarnation(of: record)
        var fields: [FieldName: SecretBytes] = [:]
        for field in record.fields {
            let name: FieldName
            do { name = try FieldName(field.name) } catch {
                throw CofferError(.dataLoss, "connection \(ref) has a malformed field name", cause: error)
            }
            let binding = FieldBinding(
                connection: ref,
                field: name,
                recordVersion: record.version,
                incarnation: incarnation,
                shape: shape
            )
            fields[name] = try keys.openAtRest(Array(field.ciphertext), binding: binding)
        }
        return ConnectionValues(ref: ref, version: record.version, fields: fields, shape: shape)
    }

    /// A record's incarnation; nil for a record of format 1, read only to migrate it.
    static func incarnation(of record: Coffer_Storage_V1_ConnectionRecord) -> [UInt8]? {
        record.incarnation.isEmpty ? nil : Array(record.incarnation)
    }

    static func info(
        _ ref: ConnectionRef,
        _ record: Coffer_Storage_V1_ConnectionRecord,
        grants: [WorkflowName]
    )
        -> ConnectionInfo
    {
        let shape = (try? shape(ref, record)) ?? .untyped
        return ConnectionInfo(
            ref: ref,
            fields: (record.fields.compactMap { try? FieldName($0.name) } + shape.publicFields.keys).sorted(),
            version: record.version,
            created: Date(unixMillis: record.createdUnixMs),
            updated: Date(unixMillis: record.updatedUnixMs),
            grants: grants,
            shape: shape
        )
    }
}

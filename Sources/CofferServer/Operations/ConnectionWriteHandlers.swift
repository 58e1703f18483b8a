import CofferCore
import CofferCrypto
import CofferStore
import CofferWire

/// The sealed fields of a Put or an Overwrite, checked: a known key id, valid names, none twice.
func sealedFields(
    _ fields: [Coffer_V1_SealedField],
    keyID: String,
    limits: StoreLimits
) throws(CofferError)
    -> SealedFields
{
    guard let keyID = KeyID(hex: keyID) else {
        throw CofferError(.invalidArgument, "key_id must be the 16 hex digits GetPublicKey returns")
    }
    guard fields.count <= limits.maxFields else {
        throw CofferError(.invalidArgument, "a connection may have at most \(limits.maxFields) fields")
    }
    var result: [FieldName: SealedValue] = [:]
    for field in fields {
        let name = try FieldName(field.name)
        guard result[name] == nil else { throw CofferError(.invalidArgument, "field \(name) appears twice") }
        result[name] = SealedValue(keyID: keyID, ciphertext: Array(field.sealedValue))
    }
    return SealedFields(result)
}

/// Put: creates a connection. Opening the sealed values is the costly part; it runs before the commit.
struct PutHandler: OperationHandler {
    let operation = CofferOperation.put
    let store: ConnectionStore

    func plan(_ request: Coffer_V1_Request.OneOf_Operation, _ context: inout RequestContext) throws(CofferError) -> Plan
    {
        guard case .put(let put) = request else { throw mismatch() }
        let ref = try context.connection(put.connection)
        let fields = try sealedFields(put.fields, keyID: put.keyID, limits: store.configuration.limits)
        let store = self.store
        return .write(
            .init(prepare: { () throws(CofferError) in
                let opened = try store.open(fields)
                return { writer, _ in
                    var result = Coffer_V1_PutResponse()
                    result.connection = Coffer_V1_ConnectionInfo(try writer.put(ref, opened))
                    return .put(result)
                }
            })
        )
    }
}

/// Overwrite: replaces all of a connection's fields, optionally only at an expected version.
struct OverwriteHandler: OperationHandler {
    let operation = CofferOperation.overwrite
    let store: ConnectionStore

    func plan(_ request: Coffer_V1_Request.OneOf_Operation, _ context: inout RequestContext) throws(CofferError) -> Plan
    {
        guard case .overwrite(let overwrite) = request else { throw mismatch() }
        let ref = try context.connection(overwrite.connection)
        let fields = try sealedFields(overwrite.fields, keyID: overwrite.keyID, limits: store.configuration.limits)
        let expected = overwrite.expectedVersion == 0 ? nil : overwrite.expectedVersion
        let store = self.store
        return .write(
            .init(prepare: { () throws(CofferError) in
                let opened = try store.open(fields)
                return { writer, _ in
                    var result = Coffer_V1_OverwriteResponse()
                    result.connection = Coffer_V1_ConnectionInfo(
                        try writer.overwrite(ref, opened, expectedVersion: expected)
                    )
                    return .overwrite(result)
                }
            })
        )
    }
}

/// Delete: removes a connection and turns its grants into tombstones.
struct DeleteHandler: OperationHandler {
    let operation = CofferOperation.delete

    func plan(_ request: Coffer_V1_Request.OneOf_Operation, _ context: inout RequestContext) throws(CofferError) -> Plan
    {
        guard case .delete(let delete) = request else { throw mismatch() }
        let ref = try context.connection(delete.connection)
        let expected = delete.expectedVersion == 0 ? nil : delete.expectedVersion
        return .write(
            .init(apply: { writer, _ in
                try writer.delete(ref, expectedVersion: expected)
                return .delete(Coffer_V1_DeleteResponse())
            })
        )
    }
}

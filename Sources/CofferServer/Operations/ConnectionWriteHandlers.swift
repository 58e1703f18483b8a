import CofferConnections
import CofferCore
import CofferCrypto
import CofferStore
import CofferWire

/// The sealed fields of a Put, an Overwrite or an Update, checked: a known key id, valid names, none twice.
func sealedFields(
    _ fields: [Coffer_V1_SealedField],
    keyID: String,
    limits: StoreLimits
) throws(CofferError)
    -> SealedFields
{
    if fields.isEmpty && keyID.isEmpty { return SealedFields([:]) }
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

/// Public fields as a write sent them, checked for names and count.
func checkedPublicFields(
    _ fields: [Coffer_V1_PublicField],
    limits: StoreLimits
) throws(CofferError) -> [FieldName: String] {
    guard fields.count <= limits.maxFields else {
        throw CofferError(.invalidArgument, "a connection may have at most \(limits.maxFields) fields")
    }
    return try fields.fields()
}

/// A whole connection as a Put or an Overwrite carries it, its names and sizes checked; `open` unseals it.
struct SealedDraft: Sendable {
    let variant: String
    let publicFields: [FieldName: String]
    let secretFields: SealedFields

    init(
        variant: String,
        publicFields: [Coffer_V1_PublicField],
        secretFields: [Coffer_V1_SealedField],
        keyID: String,
        limits: StoreLimits
    ) throws(CofferError) {
        self.variant = variant
        self.secretFields = try sealedFields(secretFields, keyID: keyID, limits: limits)
        self.publicFields = try checkedPublicFields(publicFields, limits: limits)
    }

    /// The draft with its values opened: the costly part, run before the commit, off the writer's thread.
    func open(with store: ConnectionStore) throws(CofferError) -> ConnectionDraft {
        ConnectionDraft(variant: variant, publicFields: publicFields, secretFields: try store.open(secretFields).fields)
    }
}

extension StoreLimits {
    var connection: ConnectionLimits {
        ConnectionLimits(
            maxFields: maxFields,
            maxValueBytes: maxValueBytes,
            maxConnectionBytes: maxConnectionBytes
        )
    }
}

/// Put: creates a connection. Opening the sealed values and checking the connection against its type are the
/// costly parts; they run before the commit, off the writer's thread.
struct PutHandler: OperationHandler {
    let operation = CofferOperation.put
    let store: ConnectionStore
    let types: TypeRegistry

    func plan(_ request: Coffer_V1_Request.OneOf_Operation, _ context: inout RequestContext) throws(CofferError) -> Plan
    {
        guard case .put(let put) = request else { throw mismatch() }
        let ref = try context.connection(put.connection)
        let limits = store.configuration.limits
        let sealed = try SealedDraft(
            variant: put.variant,
            publicFields: put.publicFields,
            secretFields: put.fields,
            keyID: put.keyID,
            limits: limits
        )
        let store = self.store
        let types = self.types
        return .write(
            .init(prepare: { () throws(CofferError) in
                let draft = try sealed.open(with: store)
                let checked = try types.check(ref, draft, existing: nil, limits: limits.connection)
                return { writer, _ in
                    var result = Coffer_V1_PutResponse()
                    let info = try writer.put(ref, OpenedFields(checked.secretFields), shape: checked.shape)
                    result.connection = Coffer_V1_ConnectionInfo(info)
                    return .put(result)
                }
            })
        )
    }
}

/// Overwrite: replaces all of a connection's fields, optionally only at an expected version. Checked against
/// the type in the writer, since what it replaces decides the variant and keeps generated fields.
struct OverwriteHandler: OperationHandler {
    let operation = CofferOperation.overwrite
    let store: ConnectionStore
    let types: TypeRegistry

    func plan(_ request: Coffer_V1_Request.OneOf_Operation, _ context: inout RequestContext) throws(CofferError) -> Plan
    {
        guard case .overwrite(let overwrite) = request else { throw mismatch() }
        let ref = try context.connection(overwrite.connection)
        let limits = store.configuration.limits
        let sealed = try SealedDraft(
            variant: overwrite.variant,
            publicFields: overwrite.publicFields,
            secretFields: overwrite.fields,
            keyID: overwrite.keyID,
            limits: limits
        )
        let expected = overwrite.expectedVersion == 0 ? nil : overwrite.expectedVersion
        let store = self.store
        let types = self.types
        return .write(
            .init(prepare: { () throws(CofferError) in
                let draft = try sealed.open(with: store)
                return { writer, _ in
                    let existing = try writer.shape(of: ref)
                    let checked = try types.check(ref, draft, existing: existing, limits: limits.connection)
                    var result = Coffer_V1_OverwriteResponse()
                    result.connection = Coffer_V1_ConnectionInfo(
                        try writer.overwrite(
                            ref,
                            OpenedFields(checked.secretFields),
                            shape: checked.shape,
                            expectedVersion: expected
                        )
                    )
                    return .overwrite(result)
                }
            })
        )
    }
}

/// Update: sets public fields, replaces secret fields and removes optional ones; every secret it does not name
/// is kept. The current values are decrypted in the writer, merged, checked against the type as a whole, and
/// encrypted again for the new version.
struct UpdateHandler: OperationHandler {
    let operation = CofferOperation.update
    let store: ConnectionStore
    let types: TypeRegistry

    func plan(_ request: Coffer_V1_Request.OneOf_Operation, _ context: inout RequestContext) throws(CofferError) -> Plan
    {
        guard case .update(let update) = request else { throw mismatch() }
        let ref = try context.connection(update.connection)
        let limits = store.configuration.limits
        let sealed = try sealedFields(update.setSecret, keyID: update.keyID, limits: limits)
        let setPublic = try checkedPublicFields(update.setPublic, limits: limits)
        guard update.remove.count <= limits.maxFields else {
            throw CofferError(.invalidArgument, "an update may remove at most \(limits.maxFields) fields")
        }
        var remove = Set<FieldName>()
        for text in update.remove {
            let name = try FieldName(text)
            guard remove.insert(name).inserted, setPublic[name] == nil, sealed.values[name] == nil else {
                throw CofferError(.invalidArgument, "field \(name) is named twice in the update")
            }
        }
        for name in setPublic.keys where sealed.values[name] != nil {
            throw CofferError(.invalidArgument, "field \(name) is named twice in the update")
        }
        guard !setPublic.isEmpty || !sealed.values.isEmpty || !remove.isEmpty else {
            throw CofferError(.invalidArgument, "an update must set, replace or remove at least one field")
        }
        let expected = update.expectedVersion == 0 ? nil : update.expectedVersion
        let store = self.store
        let types = self.types
        let removed = remove
        return .write(
            .init(prepare: { () throws(CofferError) in
                let setSecret = try store.open(sealed).fields
                return { writer, _ in
                    let info = try writer.update(ref, expectedVersion: expected) { current in
                        try Self.merge(ref, current, setPublic, setSecret, removed, types: types, limits: limits)
                    }
                    var result = Coffer_V1_UpdateResponse()
                    result.connection = Coffer_V1_ConnectionInfo(info)
                    return .update(result)
                }
            })
        )
    }

    static func merge(
        _ ref: ConnectionRef,
        _ current: ConnectionValues,
        _ setPublic: [FieldName: String],
        _ setSecret: [FieldName: SecretBytes],
        _ remove: Set<FieldName>,
        types: TypeRegistry,
        limits: StoreLimits
    ) throws(CofferError) -> (OpenedFields, ConnectionShape) {
        var publicFields = current.shape.publicFields
        var secretFields = current.fields
        for name in remove {
            guard publicFields.removeValue(forKey: name) != nil || secretFields.removeValue(forKey: name) != nil else {
                throw CofferError(
                    .invalidArgument,
                    "connection \(ref): field \(name) is not set, so it cannot be removed"
                )
            }
        }
        for (name, value) in setPublic {
            guard secretFields[name] == nil else {
                throw CofferError(
                    .invalidArgument,
                    "connection \(ref): field \(name) is secret: it must be sealed, never sent in clear"
                )
            }
            publicFields[name] = value
        }
        for (name, value) in setSecret {
            publicFields.removeValue(forKey: name)
            secretFields[name] = value
        }
        // Generated fields carry over from the current shape; the check refuses a write that sets one.
        var draftPublic = publicFields
        if let variant = types.type(named: ref.type)?.variant(named: current.shape.variant) {
            for name in publicFields.keys where setPublic[name] == nil && variant.spec(for: name)?.generated == true {
                draftPublic.removeValue(forKey: name)
            }
        }
        let draft = ConnectionDraft(
            variant: current.shape.variant,
            publicFields: draftPublic,
            secretFields: secretFields
        )
        let checked = try types.check(ref, draft, existing: current.shape, limits: limits.connection)
        return (OpenedFields(checked.secretFields), checked.shape)
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

import CofferCore
import CofferStore
import CofferWire

/// Grant: lets a workflow get a connection.
struct GrantHandler: OperationHandler {
    let operation = CofferOperation.grant

    func plan(_ request: Coffer_V1_Request.OneOf_Operation, _ context: inout RequestContext) throws(CofferError) -> Plan
    {
        guard case .grant(let grant) = request else { throw mismatch() }
        let workflow = try context.workflow(grant.workflow)
        let ref = try context.connection(grant.connection)
        return .write(
            .init(apply: { writer, _ in
                var result = Coffer_V1_GrantResponse()
                result.created = try writer.grant(workflow, ref)
                return .grant(result)
            })
        )
    }
}

/// Revoke: takes a workflow's grant away.
struct RevokeHandler: OperationHandler {
    let operation = CofferOperation.revoke

    func plan(_ request: Coffer_V1_Request.OneOf_Operation, _ context: inout RequestContext) throws(CofferError) -> Plan
    {
        guard case .revoke(let revoke) = request else { throw mismatch() }
        let workflow = try context.workflow(revoke.workflow)
        let ref = try context.connection(revoke.connection)
        return .write(
            .init(apply: { writer, _ in
                try writer.revoke(workflow, ref)
                return .revoke(Coffer_V1_RevokeResponse())
            })
        )
    }
}

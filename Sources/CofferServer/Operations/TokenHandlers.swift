import CofferCore
import CofferStore
import CofferWire

/// IssueToken: a workflow token, returned once; only its keyed hash is stored.
struct IssueTokenHandler: OperationHandler {
    let operation = CofferOperation.issueToken
    let defaultTTL: Duration

    func plan(_ request: Coffer_V1_Request.OneOf_Operation, _ context: inout RequestContext) throws(CofferError) -> Plan
    {
        guard case .issueToken(let issue) = request else { throw mismatch() }
        let workflow = try context.workflow(issue.workflow)
        let runID = try context.runID(issue.runID)
        let ttl: Duration = issue.ttlSeconds == 0 ? defaultTTL : .seconds(Int64(clamping: issue.ttlSeconds))
        return .write(
            .init(apply: { writer, event in
                let issued = try writer.issueToken(for: workflow, ttl: ttl, runID: runID)
                event.tokenID = issued.info.id
                return .issueToken(Coffer_V1_IssueTokenResponse(issued))
            })
        )
    }
}

/// RevokeToken: revokes a token by its public id.
struct RevokeTokenHandler: OperationHandler {
    let operation = CofferOperation.revokeToken

    func plan(_ request: Coffer_V1_Request.OneOf_Operation, _ context: inout RequestContext) throws(CofferError) -> Plan
    {
        guard case .revokeToken(let revoke) = request else { throw mismatch() }
        let id = try context.tokenID(revoke.tokenID)
        return .write(
            .init(apply: { writer, event in
                let info = try writer.revokeToken(id: id)
                event.workflow = info.workflow
                var result = Coffer_V1_RevokeTokenResponse()
                result.revokedUnixMs = info.revoked?.unixMillis ?? 0
                return .revokeToken(result)
            })
        )
    }
}

import CofferConnections
import CofferCore
import CofferStore
import CofferWire

/// List: every connection's metadata, never a secret value. A scan, so it runs off the event loop.
struct ListHandler: OperationHandler {
    let operation = CofferOperation.list

    func plan(_ request: Coffer_V1_Request.OneOf_Operation, _ context: inout RequestContext) throws(CofferError) -> Plan
    {
        .scan { reader in
            var result = Coffer_V1_ListResponse()
            result.connections = try reader.list().map(Coffer_V1_ConnectionInfo.init)
            return .list(result)
        }
    }
}

/// Describe: one connection's type, variant, public fields, which secret fields are set, version and grants.
struct DescribeHandler: OperationHandler {
    let operation = CofferOperation.describe

    func plan(_ request: Coffer_V1_Request.OneOf_Operation, _ context: inout RequestContext) throws(CofferError) -> Plan
    {
        guard case .describe(let describe) = request else { throw mismatch() }
        let ref = try context.connection(describe.connection)
        return .read { reader, _ in
            var result = Coffer_V1_DescribeResponse()
            result.connection = Coffer_V1_ConnectionInfo(try reader.info(ref))
            return .describe(result)
        }
    }
}

/// ListTypes: the connection types this cofferd knows.
struct ListTypesHandler: OperationHandler {
    let operation = CofferOperation.listTypes
    let types: TypeRegistry

    func plan(_ request: Coffer_V1_Request.OneOf_Operation, _ context: inout RequestContext) throws(CofferError) -> Plan
    {
        var result = Coffer_V1_ListTypesResponse()
        result.types = types.all.map(Coffer_V1_ConnectionType.init)
        return .done(.listTypes(result))
    }
}

import CofferCore
import CofferStore
import CofferWire

/// List: every connection's metadata, never a value. A scan, so it runs off the event loop.
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

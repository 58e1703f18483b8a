import CofferConnections
import CofferCore
import CofferCrypto
import CofferStore
import CofferWire

/// Get: a connection's values for the workflow of the presented token. The token, the grant and the record
/// are read in one transaction, so that a revocation either comes before all three or after.
struct GetHandler: OperationHandler {
    let operation = CofferOperation.get
    let types: TypeRegistry
    /// In a cluster: values are served only while this node is current enough.
    let replication: ReplicationStatus?
    let clock: WallClock

    func plan(_ request: Coffer_V1_Request.OneOf_Operation, _ context: inout RequestContext) throws(CofferError) -> Plan
    {
        guard case .get(let get) = request else { throw mismatch() }
        let ref = try context.connection(get.connection)
        let token = SecretBytes(utf8: get.token)
        let types = self.types
        try replication?.checkServingValues(now: clock())
        return .read { reader, event in
            let info = try reader.verifyToken(token)
            event.identify(info)
            var values = try reader.values(of: ref, for: info.workflow)
            values.environment = types.environment(of: values)
            return .get(Coffer_V1_GetResponse(values))
        }
    }
}

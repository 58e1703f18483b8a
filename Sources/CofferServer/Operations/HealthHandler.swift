import CofferCore
import CofferStore
import CofferWire

/// Health: whether cofferd is serving, on both sockets. Not audited.
struct HealthHandler: OperationHandler {
    let operation = CofferOperation.health
    let store: ConnectionStore

    func plan(_ request: Coffer_V1_Request.OneOf_Operation, _ context: inout RequestContext) throws(CofferError) -> Plan
    {
        let failure = store.failure
        return .done(
            .health(
                Coffer_V1_HealthResponse(
                    HealthReport(serving: failure == nil, keyID: store.keys.keyID, reason: failure?.message)
                )
            )
        )
    }
}

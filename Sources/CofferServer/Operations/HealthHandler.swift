import CofferCore
import CofferStore
import CofferWire

/// Health: whether cofferd is serving, on both sockets. Not audited.
struct HealthHandler: OperationHandler {
    let operation = CofferOperation.health
    let store: ConnectionStore
    let replication: ReplicationStatus?
    let clock: WallClock

    func plan(_ request: Coffer_V1_Request.OneOf_Operation, _ context: inout RequestContext) throws(CofferError) -> Plan
    {
        var reason = store.failure?.message
        var cluster: ClusterHealth?
        if let replication {
            let snapshot = replication.snapshot
            let state: ClusterHealth.State =
                snapshot.failure != nil
                ? .failed
                : snapshot.unreachable != nil
                    ? .unreachable : snapshot.ready && snapshot.confirmed && snapshot.lag == 0 ? .current : .catchingUp
            cluster = ClusterHealth(state: state, head: snapshot.head, lastSync: snapshot.lastSync)
            if reason == nil {
                do throws(CofferError) { try replication.checkServingValues(now: clock()) } catch {
                    reason = error.message
                }
            }
            if reason == nil, let failure = snapshot.failure { reason = failure }
        }
        let report = HealthReport(
            serving: reason == nil,
            keyID: store.keys.keyID,
            reason: reason,
            revision: store.revision,
            cluster: cluster
        )
        return .done(.health(Coffer_V1_HealthResponse(report)))
    }
}

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
            let now = clock()
            let snapshot = replication.snapshot
            let state: ClusterHealth.State
            switch replication.state(now: now) {
            case .joining, .catchingUp: state = .catchingUp
            case .current: state = .current
            case .unreachable: state = .unreachable
            case .failed: state = .failed
            }
            cluster = ClusterHealth(state: state, head: snapshot.head, lastSync: snapshot.caughtUp)
            if reason == nil {
                do throws(CofferError) { try replication.checkServingValues(now: now) } catch {
                    reason = error.message
                }
            }
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

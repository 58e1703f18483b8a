import CofferCore
import CofferCrypto
import CofferStore
import CofferWire

/// What a Watch asked for, carried from its handler to the session that follows it.
struct WatchSpec: Sendable {
    var token: SecretBytes
    /// Empty: every connection the workflow is granted, now or later.
    var connections: Set<ConnectionRef>
    var withValues: Bool
    /// Deliver changes after this revision; 0 for after `started`.
    var after: UInt64
    /// Set by the turn: the request's id, the revision its STARTED event named, and the token's workflow.
    var requestID: UInt64 = 0
    var started: UInt64 = 0
    var workflow: WorkflowName?
    /// The watch's place among the open ones, taken by the read that answered STARTED.
    var place = WatchPlaceBox()
}

/// Watch: checks the token and that every named connection is granted, in one read, and answers STARTED with
/// the newest revision; the client's handler then follows the change feed (`WatchSession`).
struct WatchHandler: OperationHandler {
    let operation = CofferOperation.watch
    let hub: WatchHub
    let replication: ReplicationStatus?
    let clock: WallClock
    /// Connections one watch may name.
    static let maxConnections = 256

    func plan(_ request: Coffer_V1_Request.OneOf_Operation, _ context: inout RequestContext) throws(CofferError) -> Plan
    {
        guard case .watch(let watch) = request else { throw mismatch() }
        try replication?.checkServingValues(now: clock())
        guard watch.connections.count <= Self.maxConnections else {
            throw CofferError(.invalidArgument, "a watch may name at most \(Self.maxConnections) connections")
        }
        var named = Set<ConnectionRef>()
        for text in watch.connections { named.insert(try ConnectionRef(parsing: text)) }
        let refs = named
        if refs.count == 1 { context.event.connection = refs.first }
        let token = SecretBytes(utf8: watch.token)
        let after = watch.afterRevision
        let hub = self.hub
        let spec = WatchSpec(token: token, connections: refs, withValues: watch.withValues, after: after)
        context.watch = spec
        let place = spec.place
        return .read { reader, event in
            let info = try reader.verifyToken(token)
            event.identify(info)
            for ref in refs.sorted() where !(try reader.isGranted(info.workflow, ref)) {
                throw CofferError(.permissionDenied, "workflow \(info.workflow) is not granted connection \(ref)")
            }
            let head = try reader.changeRange().head
            guard after <= head else {
                throw CofferError(
                    .failedPrecondition,
                    "revision \(after) is ahead of this cofferd's newest, \(head): watch from 0 and get what you need again"
                )
            }
            // Last, once nothing else can refuse it: a Watch answered STARTED holds its place.
            try place.take(for: info.id, from: hub)
            var started = Coffer_V1_WatchEvent()
            started.kind = .started
            started.revision = head
            return .watchEvent(started)
        }
    }
}

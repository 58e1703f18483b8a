import CofferConnections
import CofferCore
import CofferCrypto
import CofferStore
import CofferWire
import NIOCore

/// One watch, on its client's event loop: it follows the change feed from the revision it started at (or was
/// asked to resume after), tells its client of each change to a connection it follows that its workflow may
/// get, in revision order and once each, and ends when its token is revoked or expires, when cofferd stops, or
/// when its client stops taking its events. Every delivery with values is audited as a Get before it is sent.
///
/// The backlog (changes committed before the session joined the hub) is read from the store; changes published
/// meanwhile wait until it is read, and every change is taken only if its revision is past the last one seen.
final class WatchSession: @unchecked Sendable {
    // Confined to `loop`: every method runs there.
    let loop: any EventLoop
    private let pipeline: RequestPipeline
    private let hub: WatchHub
    private let spec: WatchSpec
    private let identity: ClientIdentity
    /// Writes one frame; false when the client has fallen too far behind.
    private let send: (ByteBuffer) -> Bool
    /// Closes the client once the ENDED event is written.
    private let close: () -> Void
    /// Marks the client active, so that a watch is never closed as idle.
    private let touch: () -> Void

    private var token: TokenInfo?
    /// The connections followed that the workflow may get, as far as this watch has seen.
    private var known = Set<ConnectionRef>()
    /// The newest revision considered.
    private var seen: UInt64 = 0
    private var catchingUp = true
    private var waiting: [ChangeEvent] = []
    private var heartbeat: RepeatedTask?
    private var expiry: Scheduled<Void>?
    private(set) var ended = false

    /// Changes read from the store at a time while catching up.
    static let backlogChunk = 512

    init(
        loop: any EventLoop,
        pipeline: RequestPipeline,
        hub: WatchHub,
        spec: WatchSpec,
        identity: ClientIdentity,
        send: @escaping (ByteBuffer) -> Bool,
        close: @escaping () -> Void,
        touch: @escaping () -> Void
    ) {
        self.loop = loop
        self.pipeline = pipeline
        self.hub = hub
        self.spec = spec
        self.identity = identity
        self.send = send
        self.close = close
        self.touch = touch
    }

    private var store: ConnectionStore { pipeline.store }

    /// Joins the hub (within the limits), then reads the backlog.
    func start() {
        do {
            let (info, granted) = try store.read { reader in
                (try reader.verifyToken(spec.token), try reader.connections(grantedTo: try workflow()))
            }
            guard let place = spec.place.current, place.token == info.id, hub.register(self, place: place) else {
                throw CofferError(.internal, "a watch started without its place")
            }
            token = info
            known = spec.connections.isEmpty ? Set(granted) : spec.connections.intersection(granted)
        } catch {
            spec.place.release()
            return end(Self.reason(error))
        }
        seen = spec.after > 0 ? spec.after : spec.started
        if let token {
            let delay = TimeAmount.milliseconds(max(token.expires.unixMillis - pipeline.clock().unixMillis, 0))
            expiry = loop.scheduleTask(in: delay) { self.end("the token expired") }
        }
        let every = TimeAmount.nanoseconds(pipeline.configuration.watchHeartbeat.nanoseconds)
        heartbeat = loop.scheduleRepeatedTask(initialDelay: every, delay: every) { _ in
            self.beat()
        }
        catchUp()
    }

    /// Committed changes, from the hub.
    func take(_ events: [ChangeEvent]) {
        guard !ended else { return }
        if catchingUp {
            waiting += events
            return
        }
        for event in events where event.revision > seen {
            handle(event)
            if ended { return }
        }
    }

    /// Ends the watch with an ENDED event saying `reason`, then closes the client.
    func end(_ reason: String) {
        guard !ended else { return }
        stop()
        var event = Coffer_V1_WatchEvent()
        event.kind = .ended
        event.revision = seen
        event.reason = reason
        _ = send(frame(event))
        close()
    }

    /// The client went away: leave the hub and stop the timers.
    func stop() {
        guard !ended else { return }
        ended = true
        heartbeat?.cancel()
        expiry?.cancel()
        if let token { hub.remove(self, token: token.id) }
        waiting = []
    }

    // MARK: Following the feed

    /// Reads the backlog a chunk at a time, yielding the loop between chunks; then takes what waited.
    private func catchUp() {
        guard !ended else { return }
        let chunk: [ChangeEvent]?
        do {
            chunk = try store.read { try $0.changes(after: seen, limit: Self.backlogChunk) }
        } catch {
            return end(Self.reason(error))
        }
        guard let chunk else {
            // Asked to resume from before the oldest change kept: start over from the newest.
            do {
                let (head, granted) = try store.read { reader in
                    (try reader.changeRange().head, try reader.connections(grantedTo: try workflow()))
                }
                seen = head
                known = spec.connections.isEmpty ? Set(granted) : spec.connections.intersection(granted)
            } catch {
                return end(Self.reason(error))
            }
            var event = Coffer_V1_WatchEvent()
            event.kind = .restart
            event.revision = seen
            event.reason = "changes after the revision asked for are no longer kept; get what you need again"
            if !send(frame(event)) { return end(Self.behind) }
            return loop.execute { self.catchUp() }
        }
        for event in chunk {
            handle(event)
            if ended { return }
        }
        if chunk.count == Self.backlogChunk { return loop.execute { self.catchUp() } }
        catchingUp = false
        let waited = waiting
        waiting = []
        take(waited)
    }

    private func follows(_ ref: ConnectionRef) -> Bool {
        spec.connections.isEmpty || spec.connections.contains(ref)
    }

    /// Which connections the workflow may get follows from the feed itself, change by change (a grant adds one,
    /// a revocation, a delete or a new put takes it away), so that each event is judged as of its revision, not
    /// by a state read later. Only values are read now, and only while the workflow may still get them.
    private func handle(_ change: ChangeEvent) {
        defer { seen = max(seen, change.revision) }
        guard let token else { return }
        switch change.kind {
        case .tokenRevoked where change.tokenID == token.id:
            end("the token was revoked")
        case .tokenRevoked, .tokenIssued:
            return
        case .grantAdded:
            guard change.workflow == token.workflow, let ref = change.connection, follows(ref) else { return }
            known.insert(ref)
            changed(ref, version: nil, revision: change.revision)
        case .grantRevoked:
            guard change.workflow == token.workflow, let ref = change.connection, known.remove(ref) != nil else {
                return
            }
            notify(.inaccessible, ref, revision: change.revision)
        case .connectionCreated:
            // A new connection starts without grants.
            if let ref = change.connection { known.remove(ref) }
        case .connectionChanged:
            guard let ref = change.connection, known.contains(ref) else { return }
            changed(ref, version: change.version, revision: change.revision)
        case .connectionDeleted:
            guard let ref = change.connection, known.remove(ref) != nil else { return }
            notify(.deleted, ref, revision: change.revision, version: change.version)
        }
    }

    private func notify(
        _ kind: Coffer_V1_WatchEvent.Kind,
        _ ref: ConnectionRef,
        revision: UInt64,
        version: UInt64 = 0
    ) {
        var event = Coffer_V1_WatchEvent()
        event.kind = kind
        event.revision = revision
        event.connection = ref.description
        event.version = version
        deliver(event)
    }

    /// A CHANGED event for `ref`, at `version` (nil, for a grant: the version it is at now). Its values come with
    /// it when asked for, when the workflow may still get them and when they are still at that version (a later
    /// event brings newer ones); a token no longer valid ends the watch.
    private func changed(_ ref: ConnectionRef, version: UInt64?, revision: UInt64) {
        guard let token else { return }
        var event = Coffer_V1_WatchEvent()
        event.kind = .changed
        event.revision = revision
        event.connection = ref.description
        event.version = version ?? 0
        var record: AuditEvent?
        do {
            // A cluster node that may not serve values now (failed, behind, cut off too long) sends none.
            if spec.withValues { try pipeline.configuration.replication?.checkServingValues(now: pipeline.clock()) }
            try store.read { reader in
                _ = try reader.verifyToken(spec.token)
                guard try reader.isGranted(token.workflow, ref) else { return }
                guard spec.withValues else {
                    if version == nil { event.version = try reader.info(ref).version }
                    return
                }
                var values = try reader.values(of: ref, for: token.workflow)
                event.version = version ?? values.version
                guard values.version == event.version else { return }
                values.environment = pipeline.configuration.types.environment(of: values)
                event.fields = Coffer_V1_GetResponse(values).fields
                var audit = AuditEvent(
                    time: pipeline.clock(),
                    socket: identity.socket,
                    action: .operation(.get),
                    peerUID: identity.peer.uid,
                    peerPID: identity.peer.pid
                )
                audit.identify(token)
                audit.connection = ref
                audit.outcome = .ok
                record = audit
            }
        } catch {
            return end(Self.reason(error))
        }
        if let record {
            // A value never leaves without its record.
            do throws(CofferError) {
                try pipeline.journal.append([record])
            } catch {
                return end("the audit record of a delivery could not be written; no value was sent")
            }
        }
        deliver(event)
    }

    private func deliver(_ event: Coffer_V1_WatchEvent) {
        if !send(frame(event)) { end(Self.behind) }
    }

    private func beat() {
        guard !ended else { return }
        touch()
        guard !catchingUp else { return }
        var event = Coffer_V1_WatchEvent()
        event.kind = .heartbeat
        event.revision = seen
        deliver(event)
    }

    private func frame(_ event: Coffer_V1_WatchEvent) -> ByteBuffer {
        var response = Coffer_V1_Response()
        response.id = spec.requestID
        response.status = .ok
        response.result = .watchEvent(event)
        var buffer = ByteBuffer()
        RequestPipeline.encode(response, into: &buffer)
        return buffer
    }

    private func workflow() throws(CofferError) -> WorkflowName {
        guard let workflow = spec.workflow else { throw CofferError(.internal, "a watch started without its workflow") }
        return workflow
    }

    static let behind = "the client took none of its events for too long; resume from the last revision seen"

    /// Why the watch ends, from an error: never a value or a token.
    static func reason(_ error: any Error) -> String {
        guard let error = error as? CofferError else { return "cofferd failed: \(error)" }
        switch error.code {
        case .unauthenticated: return "the token is no longer valid: \(error.message)"
        default: return error.message
        }
    }
}

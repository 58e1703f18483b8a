import CofferCore
import CofferStore
import CofferWire
import Foundation
import Logging
import NIOCore
import NIOPosix

/// Who a client is: its socket and, from the kernel, its process.
struct ClientIdentity: Sendable {
    var socket: SocketRole
    var peer: PeerCredentials
}

/// What a turn produced: the answers, framed and concatenated for one write, and how many of the turn's
/// frames they answer (a turn stops early once its answers are large; the rest wait for the next).
struct TurnResult: Sendable {
    var answers: ByteBuffer
    var served: Int
    /// Whether a request other than Health was served: only those keep a client from being idle.
    var productive: Bool
    /// A Watch that started: the turn ends with it, and the client's handler follows it from here.
    var watch: WatchSpec? = nil
}

/// The request path from a client's frames to its answers, the same for every operation: decode, authorise,
/// plan (the operation's handler), perform, audit, encode. Handlers do only their operation; authorisation
/// and audit are applied here, in one place.
///
/// A turn's requests are planned first, then performed in order: the short reads of a turn (Gets) share one
/// read transaction on the event loop, the changes among them share a group commit in the writer, and every
/// record of a request that changes nothing is appended to the audit journal with one write before any of
/// the turn's answers is released. When a record cannot be written, its request is answered with why, and a
/// value it would have carried is withheld.
final class RequestPipeline: Sendable {
    let store: ConnectionStore
    let journal: AuditJournal
    let commits: CommitQueue
    let background: NIOThreadPool
    let denials: DenialAggregator
    let handlers: HandlerTable
    /// Every open watch; the store tells it of each commit's changes.
    let watches: WatchHub
    let configuration: ServerConfiguration
    let logger: Logger
    let clock: WallClock

    init(
        store: ConnectionStore,
        journal: AuditJournal,
        commits: CommitQueue,
        background: NIOThreadPool,
        configuration: ServerConfiguration,
        logger: Logger,
        clock: @escaping WallClock = { Date() }
    ) {
        self.store = store
        self.journal = journal
        self.commits = commits
        self.background = background
        self.configuration = configuration
        self.logger = logger
        self.clock = clock
        denials = DenialAggregator(journal: journal, interval: configuration.denialAggregationInterval)
        let watches = WatchHub(maxWatches: configuration.maxWatches, maxPerToken: configuration.maxWatchesPerToken)
        self.watches = watches
        store.onChanges { events in watches.publish(events) }
        handlers = HandlerTable([
            GetPublicKeyHandler(store: store), PutHandler(store: store, types: configuration.types),
            OverwriteHandler(store: store, types: configuration.types),
            UpdateHandler(store: store, types: configuration.types), DeleteHandler(),
            GetHandler(types: configuration.types, replication: configuration.replication, clock: clock), ListHandler(),
            DescribeHandler(),
            ListTypesHandler(types: configuration.types), GrantHandler(), RevokeHandler(),
            IssueTokenHandler(defaultTTL: configuration.defaultTokenTTL), RevokeTokenHandler(), AuditHandler(),
            HealthHandler(store: store, replication: configuration.replication, clock: clock), RotateKeyHandler(),
            KeyStatusHandler(), RetireKeyHandler(),
            WatchHandler(hub: watches, replication: configuration.replication, clock: clock),
        ])
    }

    /// Serves a turn: `frames` are whole frame bodies, in the order they arrived. Runs on `loop`; the result
    /// completes there.
    func serve(_ frames: [[UInt8]], client: ClientIdentity, on loop: any EventLoop) -> EventLoopFuture<TurnResult> {
        Turn(pipeline: self, client: client, loop: loop, planned: frames.map { plan($0, client) }).run()
    }

    // MARK: Decode, authorise, plan

    /// A request ready to perform, or its error.
    struct Planned {
        var context: RequestContext
        var operation: CofferOperation?
        var plan: Result<Plan, CofferError>
    }

    func plan(_ frame: [UInt8], _ client: ClientIdentity) -> Planned {
        let now = clock()
        let request: Coffer_V1_Request
        do throws(CofferError) {
            request = try Framing.decode(Coffer_V1_Request.self, from: frame)
        } catch {
            // A frame that is not a Request: answered with id 0; the framing itself is intact.
            let context = RequestContext(id: 0, socket: client.socket, action: .malformed, peer: client.peer, time: now)
            return Planned(context: context, operation: nil, plan: .failure(error))
        }
        guard let payload = request.operation else {
            let context = RequestContext(
                id: request.id,
                socket: client.socket,
                action: .malformed,
                peer: client.peer,
                time: now
            )
            return Planned(
                context: context,
                operation: nil,
                plan: .failure(CofferError(.invalidArgument, "the request names no operation"))
            )
        }
        let operation = payload.operation
        var context = RequestContext(
            id: request.id,
            socket: client.socket,
            action: .operation(operation),
            peer: client.peer,
            time: now
        )
        do throws(CofferError) {
            try authorize(operation, client)
            let plan = try handlers[operation].plan(payload, &context)
            return Planned(context: context, operation: operation, plan: .success(plan))
        } catch {
            return Planned(context: context, operation: operation, plan: .failure(error))
        }
    }

    /// Which socket serves what, and who may use the admin socket. The admin socket's uids are checked when
    /// a client connects, and again here.
    private func authorize(_ operation: CofferOperation, _ client: ClientIdentity) throws(CofferError) {
        guard operation.traits.sockets.contains(client.socket) else {
            switch client.socket {
            case .worker:
                throw CofferError(
                    .permissionDenied,
                    "\(operation.rawValue) is not served on the worker socket; use the admin socket"
                )
            case .admin:
                throw CofferError(
                    .permissionDenied,
                    "\(operation.rawValue) is not served on the admin socket: values are write-only for admins; workers get them on the worker socket"
                )
            }
        }
        if client.socket == .admin, !configuration.adminUIDs.contains(client.peer.uid) {
            throw CofferError(.permissionDenied, "uid \(client.peer.uid) may not use the admin socket")
        }
    }

    // MARK: Encode

    /// Frames a response; serialising a message built here cannot fail, but if it ever did the client gets a
    /// bare INTERNAL for that request.
    static func encode(_ response: Coffer_V1_Response, into buffer: inout ByteBuffer) {
        let bytes = (try? Framing.frame(response)) ?? internalErrorFrame
        buffer.writeBytes(bytes)
    }

    /// An answer with id 0 and `error`, framed.
    static func errorFrame(_ error: CofferError) -> ByteBuffer {
        var response = Coffer_V1_Response()
        response.status = Coffer_V1_Status(error)
        var buffer = ByteBuffer()
        encode(response, into: &buffer)
        return buffer
    }

    private static let internalErrorFrame: [UInt8] = {
        var response = Coffer_V1_Response()
        response.status = Coffer_V1_Status(CofferError(.internal, "internal error"))
        return (try? Framing.frame(response)) ?? []
    }()

    /// What the client is told of an error: Coffer errors as they are; an internal error or data loss is also
    /// logged with its cause, which the client never sees.
    func reported(_ error: CofferError, operation: CofferOperation?) -> CofferError {
        if error.code == .internal || error.code == .dataLoss {
            logger.error(
                "request failed",
                metadata: [
                    "operation": "\(operation?.rawValue ?? "none")", "error": "\(error.message)",
                    "cause": "\(error.causeDescription)",
                ]
            )
        }
        return error
    }
}

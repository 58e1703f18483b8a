import CofferCore
import CofferCrypto
import CofferStore
import CofferTestSupport
import CofferWire
import Foundation
import Logging
import NIOCore
import NIOPosix

@testable import CofferServer

/// The request path of a real cofferd, in this process and without sockets: a store in a temporary
/// directory, its journal and writer, and the pipeline, with a clock the test moves.
final class InProcessServer: @unchecked Sendable {
    let dir = TemporaryDirectory()
    let clock = TestClock()
    let store: ConnectionStore
    let journal: AuditJournal
    let commits: CommitQueue
    let background = NIOThreadPool(numberOfThreads: 1)
    let pipeline: RequestPipeline
    let loop: any EventLoop = MultiThreadedEventLoopGroup.singleton.next()
    var configuration: ServerConfiguration

    static let admin = ClientIdentity(socket: .admin, peer: PeerCredentials(pid: 100, uid: 0, gid: 0))
    static let worker = ClientIdentity(socket: .worker, peer: PeerCredentials(pid: 200, uid: 1000, gid: 1000))

    init(_ adjust: (inout ServerConfiguration) -> Void = { _ in }) throws {
        var configuration = ServerConfiguration(
            adminSocket: SocketConfiguration(path: "/unused/admin", mode: 0o600),
            workerSocket: SocketConfiguration(path: "/unused/worker", mode: 0o660),
            adminUIDs: [0]
        )
        configuration.denialAggregationInterval = .milliseconds(5)
        adjust(&configuration)
        self.configuration = configuration
        let clock = self.clock
        store = try DataDirectory(dir.child("data")).initialize(
            configuration: StoreConfiguration(directory: dir.child("data"), clock: { clock.now })
        )
        journal = try AuditJournal.open(store: store).0
        commits = CommitQueue(store: store, journal: journal)
        commits.start()
        background.start()
        pipeline = RequestPipeline(
            store: store,
            journal: journal,
            commits: commits,
            background: background,
            configuration: configuration,
            logger: Logger(label: "test"),
            clock: { clock.now }
        )
    }

    deinit {
        commits.stop()
        try? background.syncShutdownGracefully()
        journal.close()
        store.close()
    }

    /// Serves one turn of `requests` (ids 1, 2, ... unless set) and returns its answers and how many it served.
    func turn(
        _ requests: [Coffer_V1_Request],
        as client: ClientIdentity = InProcessServer.admin
    ) async throws
        -> (responses: [Coffer_V1_Response], served: Int)
    {
        var frames: [[UInt8]] = []
        for (index, request) in requests.enumerated() {
            var request = request
            if request.id == 0 { request.id = UInt64(index + 1) }
            frames.append(try request.serializedBytes())
        }
        return try await turn(frames: frames, as: client)
    }

    func turn(
        frames: [[UInt8]],
        as client: ClientIdentity
    ) async throws -> (responses: [Coffer_V1_Response], served: Int) {
        // A turn runs on its client's event loop.
        let (pipeline, loop) = (self.pipeline, self.loop)
        let result = try await loop.flatSubmit { pipeline.serve(frames, client: client, on: loop) }.get()
        return (try Self.responses(in: result.answers), result.served)
    }

    /// Serves one request and returns its answer.
    func call(
        _ operation: Coffer_V1_Request.OneOf_Operation,
        as client: ClientIdentity = InProcessServer.admin
    )
        async throws -> Coffer_V1_Response
    {
        var request = Coffer_V1_Request()
        request.operation = operation
        return try await turn([request], as: client).responses[0]
    }

    static func responses(in buffer: ByteBuffer) throws -> [Coffer_V1_Response] {
        var bytes = Array(buffer.readableBytesView)[...]
        var responses: [Coffer_V1_Response] = []
        while !bytes.isEmpty {
            guard case .frame(let length, let prefix) = Framing.header(bytes, maxFrameSize: 1 << 26) else {
                throw CofferError(.internal, "a malformed answer")
            }
            let start = bytes.startIndex + prefix
            responses.append(try Framing.decode(Coffer_V1_Response.self, from: bytes[start..<(start + length)]))
            bytes = bytes[(start + length)...]
        }
        return responses
    }

    // MARK: Requests

    func put(_ connection: String, _ values: [String: String]) throws -> Coffer_V1_Request.OneOf_Operation {
        var put = Coffer_V1_PutRequest()
        put.connection = connection
        put.keyID = store.keys.keyID.hex
        put.fields = try sealed(values)
        return .put(put)
    }

    /// A typed put: `public` in clear, `secret` sealed.
    func put(
        _ connection: String,
        variant: String = "",
        public: [String: String],
        secret: [String: String]
    ) throws -> Coffer_V1_Request.OneOf_Operation {
        var put = Coffer_V1_PutRequest()
        put.connection = connection
        put.variant = variant
        put.keyID = store.keys.keyID.hex
        put.fields = try sealed(secret)
        put.publicFields = Self.clear(`public`)
        return .put(put)
    }

    func update(
        _ connection: String,
        setPublic: [String: String] = [:],
        setSecret: [String: String] = [:],
        remove: [String] = [],
        expectedVersion: UInt64 = 0
    ) throws -> Coffer_V1_Request.OneOf_Operation {
        var update = Coffer_V1_UpdateRequest()
        update.connection = connection
        update.setPublic = Self.clear(setPublic)
        if !setSecret.isEmpty {
            update.keyID = store.keys.keyID.hex
            update.setSecret = try sealed(setSecret)
        }
        update.remove = remove
        update.expectedVersion = expectedVersion
        return .update(update)
    }

    static func clear(_ values: [String: String]) -> [Coffer_V1_PublicField] {
        values.sorted { $0.key < $1.key }.map { name, value in
            var field = Coffer_V1_PublicField()
            field.name = name
            field.value = value
            return field
        }
    }

    func overwrite(_ connection: String, _ values: [String: String]) throws -> Coffer_V1_Request.OneOf_Operation {
        var overwrite = Coffer_V1_OverwriteRequest()
        overwrite.connection = connection
        overwrite.keyID = store.keys.keyID.hex
        overwrite.fields = try sealed(values)
        return .overwrite(overwrite)
    }

    private func sealed(_ values: [String: String]) throws -> [Coffer_V1_SealedField] {
        try store.keys.sealFields(values).sorted { $0.key < $1.key }.map { name, value in
            var field = Coffer_V1_SealedField()
            field.name = name.rawValue
            field.sealedValue = Data(value.ciphertext)
            return field
        }
    }

    static func grant(_ workflow: String, _ connection: String) -> Coffer_V1_Request.OneOf_Operation {
        var grant = Coffer_V1_GrantRequest()
        grant.workflow = workflow
        grant.connection = connection
        return .grant(grant)
    }

    static func issue(_ workflow: String, ttl: UInt64 = 600) -> Coffer_V1_Request.OneOf_Operation {
        var issue = Coffer_V1_IssueTokenRequest()
        issue.workflow = workflow
        issue.ttlSeconds = ttl
        return .issueToken(issue)
    }

    static func get(_ connection: String, token: String) -> Coffer_V1_Request.OneOf_Operation {
        var get = Coffer_V1_GetRequest()
        get.connection = connection
        get.token = token
        return .get(get)
    }

    static func audit(after: UInt64 = 0, limit: UInt32 = 0) -> Coffer_V1_Request.OneOf_Operation {
        var audit = Coffer_V1_AuditRequest()
        audit.afterSequence = after
        audit.limit = limit
        return .audit(audit)
    }

    /// Puts a connection, grants it to `workflow` and returns a token for it.
    func granted(_ connection: String, _ values: [String: String], to workflow: String = "w") async throws -> String {
        _ = try await call(try put(connection, values))
        _ = try await call(Self.grant(workflow, connection))
        let issued = try await call(Self.issue(workflow))
        guard case .issueToken(let token)? = issued.result else { throw CofferError(.internal, "no token") }
        return token.token
    }

    /// The whole trail, through the Audit operation.
    func trail() async throws -> [Coffer_V1_AuditRecord] {
        var records: [Coffer_V1_AuditRecord] = []
        var after: UInt64 = 0
        while true {
            let response = try await call(Self.audit(after: after))
            guard case .audit(let page)? = response.result else { throw CofferError(.internal, "no page") }
            records += page.records
            guard let last = page.records.last, last.sequence < page.lastSequence else { return records }
            after = last.sequence
        }
    }
}

extension Coffer_V1_Request {
    init(_ operation: Coffer_V1_Request.OneOf_Operation, id: UInt64 = 0) {
        self.init()
        self.operation = operation
        self.id = id
    }
}

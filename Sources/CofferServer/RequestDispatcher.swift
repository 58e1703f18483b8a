import CofferCore
import CofferCrypto
import CofferStore
import CofferWire
import Foundation
import Logging
import NIOPosix
import Synchronization

/// Turns one request into one response: checks the socket and the caller, runs the operation on the
/// store's thread pool, and leaves an audit record whatever the outcome.
struct RequestDispatcher: Sendable {
    let store: ConnectionStore
    let pool: NIOThreadPool
    let audit: AuditBatcher
    let configuration: ServerConfiguration
    let logger: Logger

    /// Operations each socket serves.
    private static let workerOperations: Set<String> = ["Get", "Health"]
    /// Operations that write their audit record in their own transaction.
    private static let mutations: Set<String> = ["Put", "Overwrite", "Delete", "Grant", "Revoke", "IssueToken",
                                                 "RevokeToken"]

    func handle(_ request: Coffer_V1_Request, role: SocketRole, peer: PeerCredentials) async -> Coffer_V1_Response {
        var response = Coffer_V1_Response()
        response.id = request.id
        let operation = request.operationName
        // Filled in by the operation once its inputs are validated.
        let context = AuditContext(AuditEvent(time: Date(), socket: role.rawValue, operation: operation,
                                              peerUID: peer.uid, peerPID: peer.pid))
        do {
            try authorize(operation, role: role, peer: peer)
            if Self.mutations.contains(operation) {
                // Records of earlier requests go first, so that sequence order follows request order.
                await audit.flush()
            }
            response.result = try await perform(request, context: context)
            response.status = .ok
        } catch {
            let failure = publicError(error, operation: operation, peer: peer)
            response.status = Coffer_V1_Status(failure)
            context.update { $0.outcome = failure.code.rawValue }
        }
        let event = context.event
        // A successful mutation wrote its record in its own transaction.
        if !(response.status.code == .ok && context.writtenWithMutation) {
            await audit.record(event)
        }
        logger.debug("request", metadata: [
            "operation": "\(operation)", "socket": "\(role.rawValue)", "outcome": "\(response.status.code)",
            "uid": "\(peer.uid)", "pid": "\(peer.pid)", "connection": "\(event.connection)",
        ])
        return response
    }

    private func authorize(_ operation: String, role: SocketRole, peer: PeerCredentials) throws(CofferError) {
        switch role {
        case .worker:
            guard Self.workerOperations.contains(operation) else {
                throw CofferError(.permissionDenied, "\(operation) is not served on the worker socket; use the admin socket")
            }
        case .admin:
            guard operation != "Get" else {
                throw CofferError(.permissionDenied,
                                  "Get is not served on the admin socket: values are write-only for admins; workers get them on the worker socket")
            }
            guard configuration.adminUIDs.contains(peer.uid) else {
                throw CofferError(.permissionDenied, "uid \(peer.uid) may not use the admin socket")
            }
        }
    }

    private func perform(_ request: Coffer_V1_Request, context: AuditContext) async throws
        -> Coffer_V1_Response.OneOf_Result
    {
        let store = self.store
        switch request.operation {
        case .getPublicKey:
            var result = Coffer_V1_GetPublicKeyResponse()
            result.publicKey = Data(store.keys.publicKey)
            result.keyID = store.keys.keyID.hex
            return .getPublicKey(result)

        case .health:
            var result = Coffer_V1_HealthResponse()
            result.status = "serving"
            result.keyID = store.keys.keyID.hex
            return .health(result)

        case .put(let put):
            let ref = try context.connection(put.connection)
            let fields = try sealedFields(put.fields, keyID: put.keyID)
            let event = context.mutation()
            let info = try await run { try store.put(ref, fields: fields, audit: event) }
            var result = Coffer_V1_PutResponse()
            result.connection = Self.wire(info)
            return .put(result)

        case .overwrite(let overwrite):
            let ref = try context.connection(overwrite.connection)
            let fields = try sealedFields(overwrite.fields, keyID: overwrite.keyID)
            let expected = overwrite.expectedVersion == 0 ? nil : overwrite.expectedVersion
            let event = context.mutation()
            let info = try await run {
                try store.overwrite(ref, fields: fields, expectedVersion: expected, audit: event)
            }
            var result = Coffer_V1_OverwriteResponse()
            result.connection = Self.wire(info)
            return .overwrite(result)

        case .delete(let delete):
            let ref = try context.connection(delete.connection)
            let expected = delete.expectedVersion == 0 ? nil : delete.expectedVersion
            let event = context.mutation()
            try await run { try store.delete(ref, expectedVersion: expected, audit: event) }
            return .delete(Coffer_V1_DeleteResponse())

        case .get(let get):
            let ref = try context.connection(get.connection)
            let token = SecretBytes(utf8: get.token)
            let values = try await run { () throws -> ConnectionValues in
                let info = try store.verifyToken(token)
                context.token(info)
                return try store.get(ref, for: info.workflow)
            }
            var result = Coffer_V1_GetResponse()
            result.connection = ref.description
            result.version = values.version
            result.fields = values.fields.sorted { $0.key < $1.key }.map { name, value in
                var field = Coffer_V1_Field()
                field.name = name.rawValue
                field.value = value.withUnsafeBytes { Data($0) }
                return field
            }
            return .get(result)

        case .list:
            let infos = try await run { try store.list() }
            var result = Coffer_V1_ListResponse()
            result.connections = infos.map(Self.wire)
            return .list(result)

        case .grant(let grant):
            let workflow = try context.workflow(grant.workflow)
            let ref = try context.connection(grant.connection)
            let event = context.mutation()
            let created = try await run { try store.grant(workflow, ref, audit: event) }
            var result = Coffer_V1_GrantResponse()
            result.created = created
            return .grant(result)

        case .revoke(let revoke):
            let workflow = try context.workflow(revoke.workflow)
            let ref = try context.connection(revoke.connection)
            let event = context.mutation()
            try await run { try store.revoke(workflow, ref, audit: event) }
            return .revoke(Coffer_V1_RevokeResponse())

        case .issueToken(let issue):
            let workflow = try context.workflow(issue.workflow)
            let runID = issue.runID.isEmpty ? nil : try RunID(issue.runID)
            context.update { $0.runID = runID?.rawValue ?? "" }
            let ttl: Duration = issue.ttlSeconds == 0
                ? configuration.defaultTokenTTL
                : .seconds(Int64(clamping: issue.ttlSeconds))
            let event = context.mutation()
            let issued = try await run { try store.issueToken(for: workflow, ttl: ttl, runID: runID, audit: event) }
            context.update { $0.tokenID = issued.info.id }
            var result = Coffer_V1_IssueTokenResponse()
            result.token = issued.token.withUnsafeBytes { String(decoding: $0, as: UTF8.self) }
            result.tokenID = issued.info.id
            result.expiresUnixMs = issued.info.expires.unixMillis
            return .issueToken(result)

        case .revokeToken(let revoke):
            let id = revoke.tokenID
            guard !id.isEmpty, id.utf8.count <= 64 else {
                throw CofferError(.invalidArgument, "a token id is 16 hex digits")
            }
            context.update { $0.tokenID = id }
            let event = context.mutation()
            let info = try await run { try store.revokeToken(id: id, audit: event) }
            context.update { $0.workflow = info.workflow.rawValue }
            var result = Coffer_V1_RevokeTokenResponse()
            result.revokedUnixMs = (info.revoked ?? Date()).unixMillis
            return .revokeToken(result)

        case .audit(let query):
            let limit = query.limit == 0 ? 1000 : min(Int(query.limit), 1000)
            // Records still waiting in the batch belong in the answer.
            await audit.flush()
            let records = try await run { try store.auditRecords(after: query.afterSequence, limit: limit) }
            var result = Coffer_V1_AuditResponse()
            result.records = records.map(Self.wire)
            return .audit(result)

        case nil:
            throw CofferError(.invalidArgument, "the request names no operation")
        }
    }

    /// Runs a store call on the thread pool: it may block on the disk or on another writer.
    private func run<R: Sendable>(_ body: @escaping @Sendable () throws -> R) async throws -> R {
        do {
            return try await pool.runIfActive { try body() }
        } catch let error as CofferError {
            throw error
        } catch {
            throw CofferError(.unavailable, "cofferd is shutting down", cause: error)
        }
    }

    private func sealedFields(_ fields: [Coffer_V1_SealedField], keyID: String) throws(CofferError)
        -> [FieldName: SealedValue]
    {
        guard let keyID = KeyID(hex: keyID) else {
            throw CofferError(.invalidArgument, "key_id must be the 16 hex digits GetPublicKey returns")
        }
        guard fields.count <= store.configuration.limits.maxFields else {
            throw CofferError(.invalidArgument,
                              "a connection may have at most \(store.configuration.limits.maxFields) fields")
        }
        var result: [FieldName: SealedValue] = [:]
        for field in fields {
            let name = try FieldName(field.name)
            guard result[name] == nil else {
                throw CofferError(.invalidArgument, "field \(name) appears twice")
            }
            result[name] = SealedValue(keyID: keyID, ciphertext: Array(field.sealedValue))
        }
        return result
    }

    /// What the client is told: Coffer errors as they are; anything else as a generic internal error whose
    /// cause goes to the log only.
    private func publicError(_ error: any Error, operation: String, peer: PeerCredentials) -> CofferError {
        if let error = error as? CofferError {
            if error.code == .internal || error.code == .dataLoss {
                logger.error("request failed", metadata: [
                    "operation": "\(operation)", "error": "\(error.message)",
                    "cause": "\(error.cause.map { "\($0)" } ?? "")",
                ])
            }
            return error
        }
        logger.error("request failed", metadata: ["operation": "\(operation)", "cause": "\(error)"])
        return CofferError(.internal, "internal error")
    }

    static func wire(_ info: ConnectionInfo) -> Coffer_V1_ConnectionInfo {
        var out = Coffer_V1_ConnectionInfo()
        out.connection = info.ref.description
        out.fields = info.fields.map(\.rawValue)
        out.version = info.version
        out.createdUnixMs = info.created.unixMillis
        out.updatedUnixMs = info.updated.unixMillis
        out.grants = info.grants.map(\.rawValue)
        return out
    }

    static func wire(_ event: AuditEvent) -> Coffer_V1_AuditRecord {
        var out = Coffer_V1_AuditRecord()
        out.sequence = event.sequence
        out.timeUnixMs = event.time.unixMillis
        out.socket = event.socket
        out.operation = event.operation
        out.connection = event.connection
        out.workflow = event.workflow
        out.tokenID = event.tokenID
        out.runID = event.runID
        out.peerUid = event.peerUID
        out.peerPid = event.peerPID
        out.outcome = Coffer_V1_Code(rawValue: event.outcome) ?? .unknown
        return out
    }
}

/// The request's audit record, filled in as its inputs are validated. Only validated names go in, so a
/// client cannot smuggle anything else (a value pasted in the wrong field) into the trail.
final class AuditContext: Sendable {
    // Written by the task handling the request and by the pool thread it awaits.
    private let state: Mutex<(event: AuditEvent, writtenWithMutation: Bool)>

    init(_ event: AuditEvent) { state = Mutex((event, false)) }

    /// The record as it stands.
    var event: AuditEvent { state.withLock { $0.event } }
    /// Whether a mutation was handed the record to write in its own transaction.
    var writtenWithMutation: Bool { state.withLock { $0.writtenWithMutation } }

    func update(_ change: (inout AuditEvent) -> Void) { state.withLock { change(&$0.event) } }

    func connection(_ text: String) throws(CofferError) -> ConnectionRef {
        let ref = try ConnectionRef(parsing: text)
        update { $0.connection = ref.description }
        return ref
    }

    func workflow(_ text: String) throws(CofferError) -> WorkflowName {
        let name = try WorkflowName(text)
        update { $0.workflow = name.rawValue }
        return name
    }

    func token(_ info: TokenInfo) {
        update {
            $0.workflow = info.workflow.rawValue
            $0.tokenID = info.id
            $0.runID = info.runID?.rawValue ?? ""
        }
    }

    /// The record a mutation writes in its own transaction when it succeeds.
    func mutation() -> AuditEvent {
        state.withLock {
            $0.writtenWithMutation = true
            return $0.event
        }
    }
}

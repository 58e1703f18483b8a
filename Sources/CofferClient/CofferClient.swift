import CofferConnections
import CofferCore
import CofferCrypto
import CofferWire
import Foundation

/// What an admin tool does on the admin socket: write connections it can never read back, grant them to
/// workflows, issue tokens, and read the audit trail. Every answer is the domain model, never a wire type.
public struct CofferAdminClient: Sendable {
    public let socket: CofferSocket

    public init(socketPath: String = CofferDefaults.adminSocket, timeout: Duration = .seconds(30)) throws(CofferError) {
        socket = try CofferSocket(socketPath: socketPath, timeout: timeout)
    }

    /// The daemon's public key and its id.
    public func publicKey() throws(CofferError) -> (key: [UInt8], id: KeyID) {
        let result = try socket.perform(.getPublicKey(Coffer_V1_GetPublicKeyRequest())) { r throws(CofferError) in
            guard case .getPublicKey(let v) = r else { throw unexpected() }
            return v
        }
        guard result.publicKey.count == 32, let id = KeyID(hex: result.keyID) else {
            throw CofferError(.internal, "cofferd sent a malformed public key")
        }
        return (Array(result.publicKey), id)
    }

    /// Seals each secret value to the daemon's public key and creates the connection: `publicFields` travel in
    /// clear, `variant` names the type's auth variant (nil for its default). cofferd checks the whole connection
    /// against its type.
    @discardableResult
    public func put(
        _ ref: ConnectionRef,
        variant: String? = nil,
        publicFields: [FieldName: String] = [:],
        values: [FieldName: SecretBytes]
    ) throws(CofferError) -> ConnectionInfo {
        var request = Coffer_V1_PutRequest()
        request.connection = ref.description
        request.variant = variant ?? ""
        request.publicFields = [Coffer_V1_PublicField](publicFields)
        (request.keyID, request.fields) = try seal(values)
        return try socket.perform(.put(request)) { r throws(CofferError) in
            guard case .put(let v) = r else { throw unexpected() }
            return try ConnectionInfo(v.connection)
        }
    }

    /// Seals each value and replaces all of the connection's fields; with `expectedVersion`, only if the
    /// connection is at that version.
    @discardableResult
    public func overwrite(
        _ ref: ConnectionRef,
        variant: String? = nil,
        publicFields: [FieldName: String] = [:],
        values: [FieldName: SecretBytes],
        expectedVersion: UInt64? = nil
    )
        throws(CofferError) -> ConnectionInfo
    {
        var request = Coffer_V1_OverwriteRequest()
        request.connection = ref.description
        request.variant = variant ?? ""
        request.publicFields = [Coffer_V1_PublicField](publicFields)
        request.expectedVersion = expectedVersion ?? 0
        (request.keyID, request.fields) = try seal(values)
        return try socket.perform(.overwrite(request)) { r throws(CofferError) in
            guard case .overwrite(let v) = r else { throw unexpected() }
            return try ConnectionInfo(v.connection)
        }
    }

    /// Changes some fields: sets `setPublic`, replaces (or adds) the secret fields in `setSecret`, removes the
    /// optional fields in `remove`; every secret not named is kept. With `expectedVersion`, only at that version.
    @discardableResult
    public func update(
        _ ref: ConnectionRef,
        setPublic: [FieldName: String] = [:],
        setSecret: [FieldName: SecretBytes] = [:],
        remove: [FieldName] = [],
        expectedVersion: UInt64? = nil
    ) throws(CofferError) -> ConnectionInfo {
        var request = Coffer_V1_UpdateRequest()
        request.connection = ref.description
        request.setPublic = [Coffer_V1_PublicField](setPublic)
        if !setSecret.isEmpty { (request.keyID, request.setSecret) = try seal(setSecret) }
        request.remove = remove.map(\.rawValue)
        request.expectedVersion = expectedVersion ?? 0
        return try socket.perform(.update(request)) { r throws(CofferError) in
            guard case .update(let v) = r else { throw unexpected() }
            return try ConnectionInfo(v.connection)
        }
    }

    /// One connection's type, variant, public fields, which secret fields are set, version and grants.
    public func describe(_ ref: ConnectionRef) throws(CofferError) -> ConnectionInfo {
        var request = Coffer_V1_DescribeRequest()
        request.connection = ref.description
        return try socket.perform(.describe(request)) { r throws(CofferError) in
            guard case .describe(let v) = r else { throw unexpected() }
            return try ConnectionInfo(v.connection)
        }
    }

    /// The connection types cofferd knows, by name.
    public func types() throws(CofferError) -> [ConnectionType] {
        try socket.perform(.listTypes(Coffer_V1_ListTypesRequest())) { r throws(CofferError) in
            guard case .listTypes(let v) = r else { throw unexpected() }
            var types: [ConnectionType] = []
            for type in v.types { types.append(try ConnectionType(type)) }
            return types
        }
    }

    public func delete(_ ref: ConnectionRef, expectedVersion: UInt64? = nil) throws(CofferError) {
        var request = Coffer_V1_DeleteRequest()
        request.connection = ref.description
        request.expectedVersion = expectedVersion ?? 0
        try socket.perform(.delete(request)) { _ throws(CofferError) in }
    }

    public func list() throws(CofferError) -> [ConnectionInfo] {
        try socket.perform(.list(Coffer_V1_ListRequest())) { r throws(CofferError) in
            guard case .list(let v) = r else { throw unexpected() }
            var infos: [ConnectionInfo] = []
            for info in v.connections { infos.append(try ConnectionInfo(info)) }
            return infos
        }
    }

    /// Grants `ref` to `workflow`; false when the grant was already there.
    @discardableResult
    public func grant(_ workflow: WorkflowName, _ ref: ConnectionRef) throws(CofferError) -> Bool {
        var request = Coffer_V1_GrantRequest()
        request.workflow = workflow.rawValue
        request.connection = ref.description
        return try socket.perform(.grant(request)) { r throws(CofferError) in
            guard case .grant(let v) = r else { throw unexpected() }
            return v.created
        }
    }

    public func revoke(_ workflow: WorkflowName, _ ref: ConnectionRef) throws(CofferError) {
        var request = Coffer_V1_RevokeRequest()
        request.workflow = workflow.rawValue
        request.connection = ref.description
        try socket.perform(.revoke(request)) { _ throws(CofferError) in }
    }

    /// Issues a token for `workflow`; `ttl` nil for cofferd's default. The token is in the result once; keep
    /// it secret.
    public func issueToken(
        for workflow: WorkflowName,
        ttl: Duration? = nil,
        runID: RunID? = nil
    )
        throws(CofferError) -> IssuedToken
    {
        var request = Coffer_V1_IssueTokenRequest()
        request.workflow = workflow.rawValue
        request.ttlSeconds = ttl.map { UInt64(max($0.wholeSeconds, 1)) } ?? 0
        request.runID = runID?.rawValue ?? ""
        return try socket.perform(.issueToken(request)) { r throws(CofferError) in
            guard case .issueToken(let v) = r else { throw unexpected() }
            return try IssuedToken(v, workflow: workflow, runID: runID)
        }
    }

    /// Revokes a token by its id; returns when it was revoked.
    @discardableResult
    public func revokeToken(id: TokenID) throws(CofferError) -> Date {
        var request = Coffer_V1_RevokeTokenRequest()
        request.tokenID = id.rawValue
        return try socket.perform(.revokeToken(request)) { r throws(CofferError) in
            guard case .revokeToken(let v) = r else { throw unexpected() }
            return Date(unixMillis: v.revokedUnixMs)
        }
    }

    /// A page of the audit trail after `sequence`; `limit` 0 for cofferd's page size.
    public func audit(after sequence: UInt64 = 0, limit: UInt32 = 0) throws(CofferError) -> AuditPage {
        var request = Coffer_V1_AuditRequest()
        request.afterSequence = sequence
        request.limit = limit
        return try socket.perform(.audit(request)) { r throws(CofferError) in
            guard case .audit(let v) = r else { throw unexpected() }
            return try AuditPage(v)
        }
    }

    public func health() throws(CofferError) -> HealthReport {
        try socket.health()
    }

    /// Makes a new key generation active; returns it. Values are re-encrypted to it in the background.
    @discardableResult
    public func rotateKey() throws(CofferError) -> KeyGenerationInfo {
        try socket.perform(.rotateKey(Coffer_V1_RotateKeyRequest())) { r throws(CofferError) in
            guard case .rotateKey(let v) = r else { throw unexpected() }
            return try KeyGenerationInfo(v.generation)
        }
    }

    /// Every key generation, what depends on each, and the re-encryption's progress.
    public func keyStatus() throws(CofferError) -> KeyStatus {
        try socket.perform(.keyStatus(Coffer_V1_KeyStatusRequest())) { r throws(CofferError) in
            guard case .keyStatus(let v) = r else { throw unexpected() }
            return try KeyStatus(v)
        }
    }

    /// Retires a key generation that nothing depends on any more.
    @discardableResult
    public func retireKey(_ generation: UInt32) throws(CofferError) -> KeyGenerationInfo {
        var request = Coffer_V1_RetireKeyRequest()
        request.generation = generation
        return try socket.perform(.retireKey(request)) { r throws(CofferError) in
            guard case .retireKey(let v) = r else { throw unexpected() }
            return try KeyGenerationInfo(v.generation)
        }
    }

    private func seal(_ values: [FieldName: SecretBytes]) throws(CofferError) -> (String, [Coffer_V1_SealedField]) {
        let (key, id) = try publicKey()
        var fields: [Coffer_V1_SealedField] = []
        for (name, value) in values.sorted(by: { $0.key < $1.key }) {
            let sealed = try SealedValue.seal(value, to: key, keyID: id)
            var field = Coffer_V1_SealedField()
            field.name = name.rawValue
            field.sealedValue = Data(sealed.ciphertext)
            fields.append(field)
        }
        return (id.hex, fields)
    }
}

/// What a workflow step does on the worker socket: get the values of a connection its workflow is granted.
public struct CofferWorkerClient: Sendable {
    public let socket: CofferSocket

    public init(socketPath: String = CofferDefaults.workerSocket, timeout: Duration = .seconds(30)) throws(CofferError)
    {
        socket = try CofferSocket(socketPath: socketPath, timeout: timeout)
    }

    /// The connection's values, typed: secret fields in `fields`, public ones in `shape.publicFields`.
    public func get(_ ref: ConnectionRef, token: SecretBytes) throws(CofferError) -> ConnectionValues {
        var request = Coffer_V1_GetRequest()
        request.connection = ref.description
        request.token = token.withUnsafeBytes { String(decoding: $0, as: UTF8.self) }
        return try socket.perform(.get(request)) { r throws(CofferError) in
            guard case .get(let v) = r else { throw unexpected() }
            return try ConnectionValues(v)
        }
    }

    public func health() throws(CofferError) -> HealthReport {
        try socket.health()
    }
}

extension CofferSocket {
    func perform<R>(
        _ operation: Coffer_V1_Request.OneOf_Operation,
        _ extract: (Coffer_V1_Response.OneOf_Result?) throws(CofferError) -> R
    ) throws(CofferError) -> R {
        var request = Coffer_V1_Request()
        request.operation = operation
        let response = try call(request)
        if let error = response.status.error { throw error }
        if response.revision > 0 { lastRevision = response.revision }
        return try extract(response.result)
    }

    /// Asks whether cofferd is serving; both sockets answer.
    public func health() throws(CofferError) -> HealthReport {
        try perform(.health(Coffer_V1_HealthRequest())) { r throws(CofferError) in
            guard case .health(let v) = r else { throw unexpected() }
            return try HealthReport(v)
        }
    }
}

private func unexpected() -> CofferError {
    CofferError(.internal, "cofferd answered with a result of another operation")
}

import CofferCore
import CofferCrypto
import CofferWire
import Foundation

/// What an admin tool does on the admin socket: write connections it can never read back, grant them to
/// workflows, issue tokens, and read the audit trail.
public struct CofferAdminClient: Sendable {
    public let connection: CofferConnection

    public init(socketPath: String = CofferDefaults.adminSocket, timeout: Duration = .seconds(30)) throws(CofferError) {
        connection = try CofferConnection(socketPath: socketPath, timeout: timeout)
    }

    /// The daemon's public key and its id.
    public func publicKey() throws(CofferError) -> (key: [UInt8], id: KeyID) {
        let result = try call(.getPublicKey(Coffer_V1_GetPublicKeyRequest())) { r throws(CofferError) in
            guard case .getPublicKey(let v) = r else { throw unexpected() }
            return v
        }
        guard result.publicKey.count == 32, let id = KeyID(hex: result.keyID) else {
            throw CofferError(.internal, "cofferd sent a malformed public key")
        }
        return (Array(result.publicKey), id)
    }

    /// Seals each value to the daemon's public key and creates the connection.
    @discardableResult
    public func put(_ ref: ConnectionRef, values: [String: SecretBytes]) throws(CofferError) -> Coffer_V1_ConnectionInfo {
        var request = Coffer_V1_PutRequest()
        request.connection = ref.description
        (request.keyID, request.fields) = try seal(values)
        return try call(.put(request)) { r throws(CofferError) in
            guard case .put(let v) = r else { throw unexpected() }
            return v.connection
        }
    }

    /// Seals each value and replaces all of the connection's fields; with `expectedVersion`, only if the
    /// connection is at that version.
    @discardableResult
    public func overwrite(_ ref: ConnectionRef, values: [String: SecretBytes], expectedVersion: UInt64? = nil)
        throws(CofferError) -> Coffer_V1_ConnectionInfo
    {
        var request = Coffer_V1_OverwriteRequest()
        request.connection = ref.description
        request.expectedVersion = expectedVersion ?? 0
        (request.keyID, request.fields) = try seal(values)
        return try call(.overwrite(request)) { r throws(CofferError) in
            guard case .overwrite(let v) = r else { throw unexpected() }
            return v.connection
        }
    }

    public func delete(_ ref: ConnectionRef, expectedVersion: UInt64? = nil) throws(CofferError) {
        var request = Coffer_V1_DeleteRequest()
        request.connection = ref.description
        request.expectedVersion = expectedVersion ?? 0
        try call(.delete(request)) { _ throws(CofferError) in }
    }

    public func list() throws(CofferError) -> [Coffer_V1_ConnectionInfo] {
        try call(.list(Coffer_V1_ListRequest())) { r throws(CofferError) in
            guard case .list(let v) = r else { throw unexpected() }
            return v.connections
        }
    }

    /// Grants `ref` to `workflow`; false when the grant was already there.
    @discardableResult
    public func grant(_ workflow: WorkflowName, _ ref: ConnectionRef) throws(CofferError) -> Bool {
        var request = Coffer_V1_GrantRequest()
        request.workflow = workflow.rawValue
        request.connection = ref.description
        return try call(.grant(request)) { r throws(CofferError) in
            guard case .grant(let v) = r else { throw unexpected() }
            return v.created
        }
    }

    public func revoke(_ workflow: WorkflowName, _ ref: ConnectionRef) throws(CofferError) {
        var request = Coffer_V1_RevokeRequest()
        request.workflow = workflow.rawValue
        request.connection = ref.description
        try call(.revoke(request)) { _ throws(CofferError) in }
    }

    /// Issues a token for `workflow`. The token is in the result once; keep it secret.
    public func issueToken(for workflow: WorkflowName, ttlSeconds: UInt64 = 0, runID: RunID? = nil)
        throws(CofferError) -> (token: SecretBytes, id: String, expires: Date)
    {
        var request = Coffer_V1_IssueTokenRequest()
        request.workflow = workflow.rawValue
        request.ttlSeconds = ttlSeconds
        request.runID = runID?.rawValue ?? ""
        let result = try call(.issueToken(request)) { r throws(CofferError) in
            guard case .issueToken(let v) = r else { throw unexpected() }
            return v
        }
        return (SecretBytes(utf8: result.token), result.tokenID,
                Date(timeIntervalSince1970: TimeInterval(result.expiresUnixMs) / 1000))
    }

    public func revokeToken(id: String) throws(CofferError) {
        var request = Coffer_V1_RevokeTokenRequest()
        request.tokenID = id
        try call(.revokeToken(request)) { _ throws(CofferError) in }
    }

    public func audit(after sequence: UInt64 = 0, limit: UInt32 = 0) throws(CofferError) -> [Coffer_V1_AuditRecord] {
        var request = Coffer_V1_AuditRequest()
        request.afterSequence = sequence
        request.limit = limit
        return try call(.audit(request)) { r throws(CofferError) in
            guard case .audit(let v) = r else { throw unexpected() }
            return v.records
        }
    }

    public func health() throws(CofferError) -> Coffer_V1_HealthResponse {
        try connection.health()
    }

    private func seal(_ values: [String: SecretBytes]) throws(CofferError) -> (String, [Coffer_V1_SealedField]) {
        let (key, id) = try publicKey()
        var fields: [Coffer_V1_SealedField] = []
        for (name, value) in values.sorted(by: { $0.key < $1.key }) {
            let sealed = try SealedValue.seal(value, to: key, keyID: id)
            var field = Coffer_V1_SealedField()
            field.name = try FieldName(name).rawValue
            field.sealedValue = Data(sealed.ciphertext)
            fields.append(field)
        }
        return (id.hex, fields)
    }

    private func call<R>(_ operation: Coffer_V1_Request.OneOf_Operation,
                         _ extract: (Coffer_V1_Response.OneOf_Result?) throws(CofferError) -> R) throws(CofferError) -> R
    {
        try connection.perform(operation, extract)
    }
}

/// What a workflow step does on the worker socket: get the values of a connection its workflow is granted.
public struct CofferWorkerClient: Sendable {
    public let connection: CofferConnection

    public init(socketPath: String = CofferDefaults.workerSocket, timeout: Duration = .seconds(30)) throws(CofferError) {
        connection = try CofferConnection(socketPath: socketPath, timeout: timeout)
    }

    /// The connection's values, by field name, and its version.
    public func get(_ ref: ConnectionRef, token: SecretBytes) throws(CofferError) -> (version: UInt64, fields: [String: SecretBytes]) {
        var request = Coffer_V1_GetRequest()
        request.connection = ref.description
        request.token = token.withUnsafeBytes { String(decoding: $0, as: UTF8.self) }
        let result = try connection.perform(.get(request)) { r throws(CofferError) in
            guard case .get(let v) = r else { throw unexpected() }
            return v
        }
        var fields: [String: SecretBytes] = [:]
        for field in result.fields { fields[field.name] = SecretBytes(copying: field.value) }
        return (result.version, fields)
    }

    public func health() throws(CofferError) -> Coffer_V1_HealthResponse {
        try connection.health()
    }
}

extension CofferConnection {
    func perform<R>(_ operation: Coffer_V1_Request.OneOf_Operation,
                    _ extract: (Coffer_V1_Response.OneOf_Result?) throws(CofferError) -> R) throws(CofferError) -> R
    {
        var request = Coffer_V1_Request()
        request.operation = operation
        let response = try call(request)
        if let error = response.status.error { throw error }
        return try extract(response.result)
    }

    /// Asks whether cofferd is serving; both sockets answer.
    public func health() throws(CofferError) -> Coffer_V1_HealthResponse {
        try perform(.health(Coffer_V1_HealthRequest())) { r throws(CofferError) in
            guard case .health(let v) = r else { throw unexpected() }
            return v
        }
    }
}

private func unexpected() -> CofferError {
    CofferError(.internal, "cofferd answered with a result of another operation")
}

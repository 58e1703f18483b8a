import CofferConnections
import CofferCore
import CofferCrypto
import Foundation

// The one place where the domain model meets the generated wire types. Everything above the wire (the
// server's handlers, the client library) speaks the model; conversions from the wire validate what they read.

// MARK: Status codes and errors

extension Coffer_V1_Code {
    public init(_ code: StatusCode) { self = Coffer_V1_Code(rawValue: code.rawValue) ?? .internal }
}

extension StatusCode {
    /// The code a wire code stands for; a code Coffer does not use reads as INTERNAL.
    public init(_ code: Coffer_V1_Code) { self = StatusCode(rawValue: code.rawValue) ?? .internal }
}

extension Coffer_V1_Status {
    /// An OK status.
    public static var ok: Coffer_V1_Status {
        var status = Coffer_V1_Status()
        status.code = .ok
        return status
    }

    /// The status a Coffer error is sent as.
    public init(_ error: CofferError) {
        self.init()
        code = Coffer_V1_Code(error.code)
        message = error.message
    }

    /// The error a non-OK status stands for, or nil for OK.
    public var error: CofferError? {
        guard code != .ok else { return nil }
        let code = StatusCode(self.code)
        return CofferError(code == .ok ? .internal : code, message.isEmpty ? code.description : message)
    }
}

// MARK: Operations

extension Coffer_V1_Request.OneOf_Operation {
    /// The operation this request names.
    public var operation: CofferOperation {
        switch self {
        case .getPublicKey: .getPublicKey
        case .put: .put
        case .overwrite: .overwrite
        case .delete: .delete
        case .get: .get
        case .list: .list
        case .grant: .grant
        case .revoke: .revoke
        case .issueToken: .issueToken
        case .revokeToken: .revokeToken
        case .audit: .audit
        case .health: .health
        case .rotateKey: .rotateKey
        case .keyStatus: .keyStatus
        case .retireKey: .retireKey
        case .update: .update
        case .describe: .describe
        case .listTypes: .listTypes
        case .watch: .watch
        }
    }
}

// MARK: Connections

extension Coffer_V1_ConnectionInfo {
    public init(_ info: ConnectionInfo) {
        self.init()
        connection = info.ref.description
        fields = info.fields.map(\.rawValue)
        version = info.version
        createdUnixMs = info.created.unixMillis
        updatedUnixMs = info.updated.unixMillis
        grants = info.grants.map(\.rawValue)
        typeVersion = info.shape.typeVersion
        variant = info.shape.variant
        publicFields = [Coffer_V1_PublicField](info.shape.publicFields)
        secretFields = info.secretFields.map(\.rawValue)
    }
}

extension [Coffer_V1_PublicField] {
    /// Public fields, sorted by name.
    public init(_ fields: [FieldName: String]) {
        self = fields.sorted { $0.key < $1.key }.map { name, value in
            var field = Coffer_V1_PublicField()
            field.name = name.rawValue
            field.value = value
            return field
        }
    }

    /// The fields by name; INVALID_ARGUMENT for a malformed name or one sent twice.
    public func fields() throws(CofferError) -> [FieldName: String] {
        var result: [FieldName: String] = [:]
        for field in self {
            let name = try FieldName(field.name)
            guard result[name] == nil else { throw CofferError(.invalidArgument, "field \(name) appears twice") }
            result[name] = field.value
        }
        return result
    }
}

extension ConnectionInfo {
    /// Reads what cofferd sent; a malformed name is cofferd's failure, INTERNAL.
    public init(_ wire: Coffer_V1_ConnectionInfo) throws(CofferError) {
        do {
            self.init(
                ref: try ConnectionRef(parsing: wire.connection),
                fields: try wire.fields.map(FieldName.init),
                version: wire.version,
                created: Date(unixMillis: wire.createdUnixMs),
                updated: Date(unixMillis: wire.updatedUnixMs),
                grants: try wire.grants.map(WorkflowName.init),
                shape: ConnectionShape(
                    typeVersion: wire.typeVersion,
                    variant: wire.variant,
                    publicFields: try wire.publicFields.fields()
                )
            )
        } catch {
            throw CofferError(.internal, "cofferd sent a malformed connection", cause: error)
        }
    }
}

extension Coffer_V1_GetResponse {
    public init(_ values: ConnectionValues) {
        self.init()
        connection = values.ref.description
        version = values.version
        typeVersion = values.shape.typeVersion
        variant = values.shape.variant
        var fields = values.fields.map { name, value in
            var field = Coffer_V1_Field()
            field.name = name.rawValue
            field.value = value.withUnsafeBytes { Data($0) }
            field.environment = values.environment[name] ?? ""
            return field
        }
        for (name, value) in values.shape.publicFields {
            var field = Coffer_V1_Field()
            field.name = name.rawValue
            field.value = Data(value.utf8)
            field.public = true
            field.environment = values.environment[name] ?? ""
            fields.append(field)
        }
        self.fields = fields.sorted { $0.name < $1.name }
    }
}

extension ConnectionValues {
    /// Reads a Get's answer; the secret values move into secret storage.
    public init(_ wire: Coffer_V1_GetResponse) throws(CofferError) {
        do {
            var fields: [FieldName: SecretBytes] = [:]
            var publicFields: [FieldName: String] = [:]
            var environment: [FieldName: String] = [:]
            for field in wire.fields {
                let name = try FieldName(field.name)
                if field.public {
                    publicFields[name] = String(decoding: field.value, as: UTF8.self)
                } else {
                    fields[name] = SecretBytes(copying: field.value)
                }
                if !field.environment.isEmpty { environment[name] = field.environment }
            }
            self.init(
                ref: try ConnectionRef(parsing: wire.connection),
                version: wire.version,
                fields: fields,
                shape: ConnectionShape(
                    typeVersion: wire.typeVersion,
                    variant: wire.variant,
                    publicFields: publicFields
                ),
                environment: environment
            )
        } catch {
            throw CofferError(.internal, "cofferd sent a malformed connection", cause: error)
        }
    }
}

// MARK: Connection types

extension Coffer_V1_ConnectionType {
    public init(_ type: ConnectionType) {
        self.init()
        name = type.name
        version = type.version
        description_p = type.description
        variants = type.variants.map { variant in
            var wire = Coffer_V1_ConnectionVariant()
            wire.name = variant.name
            wire.description_p = variant.description
            wire.requiresOneOf = variant.requiresOneOf
            wire.fields = variant.fields.map { spec in
                var field = Coffer_V1_FieldSpec()
                field.name = spec.name
                field.secret = spec.secret
                field.required = spec.required
                field.format = spec.format.rawValue
                field.values = spec.values
                field.pattern = spec.pattern ?? ""
                field.maxLength = UInt32(clamping: spec.maxLength)
                field.generated = spec.generated
                field.citable = spec.citable
                field.environment = spec.environment ?? ""
                field.description_p = spec.description
                return field
            }
            return wire
        }
    }
}

extension ConnectionType {
    /// Reads what cofferd sent; an unknown format is cofferd's failure, INTERNAL.
    public init(_ wire: Coffer_V1_ConnectionType) throws(CofferError) {
        var variants: [Variant] = []
        for variant in wire.variants {
            var fields: [FieldSpec] = []
            for field in variant.fields {
                guard let format = FieldFormat(rawValue: field.format) else {
                    throw CofferError(.internal, "cofferd sent a field of an unknown format")
                }
                fields.append(
                    FieldSpec(
                        field.name,
                        secret: field.secret,
                        required: field.required,
                        format: format,
                        values: field.values,
                        pattern: field.pattern.isEmpty ? nil : field.pattern,
                        maxLength: Int(field.maxLength),
                        generated: field.generated,
                        citable: field.citable,
                        environment: field.environment.isEmpty ? nil : field.environment,
                        description: field.description_p
                    )
                )
            }
            variants.append(
                Variant(
                    name: variant.name,
                    description: variant.description_p,
                    fields: fields,
                    requiresOneOf: variant.requiresOneOf
                )
            )
        }
        guard !variants.isEmpty else { throw CofferError(.internal, "cofferd sent a type without variants") }
        self.init(name: wire.name, version: wire.version, description: wire.description_p, variants: variants)
    }
}

// MARK: Audit

extension Coffer_V1_AuditRecord {
    public init(_ event: AuditEvent) {
        self.init()
        sequence = event.sequence
        timeUnixMs = event.time.unixMillis
        socket = event.socket.rawValue
        operation = event.action.name
        connection = event.connection?.description ?? ""
        workflow = event.workflow?.rawValue ?? ""
        tokenID = event.tokenID?.rawValue ?? ""
        runID = event.runID?.rawValue ?? ""
        peerUid = event.peerUID
        peerPid = event.peerPID
        outcome = Coffer_V1_Code(event.outcome)
        count = event.count
    }
}

extension AuditEvent {
    public init(_ wire: Coffer_V1_AuditRecord) throws(CofferError) {
        do {
            guard let socket = SocketRole(rawValue: wire.socket), let action = AuditAction(name: wire.operation) else {
                throw CofferError(.internal, "unknown socket or operation")
            }
            self.init(
                time: Date(unixMillis: wire.timeUnixMs),
                socket: socket,
                action: action,
                peerUID: wire.peerUid,
                peerPID: wire.peerPid
            )
            sequence = wire.sequence
            connection = wire.connection.isEmpty ? nil : try ConnectionRef(parsing: wire.connection)
            workflow = wire.workflow.isEmpty ? nil : try WorkflowName(wire.workflow)
            tokenID = wire.tokenID.isEmpty ? nil : try TokenID(wire.tokenID)
            runID = wire.runID.isEmpty ? nil : try RunID(wire.runID)
            outcome = StatusCode(wire.outcome)
            count = max(wire.count, 1)
        } catch {
            throw CofferError(.internal, "cofferd sent a malformed audit record", cause: error)
        }
    }
}

extension Coffer_V1_AuditResponse {
    public init(_ page: AuditPage) {
        self.init()
        records = page.records.map(Coffer_V1_AuditRecord.init)
        lastSequence = page.lastSequence
    }
}

extension AuditPage {
    public init(_ wire: Coffer_V1_AuditResponse) throws(CofferError) {
        var records: [AuditEvent] = []
        for record in wire.records { records.append(try AuditEvent(record)) }
        self.init(records: records, lastSequence: wire.lastSequence)
    }
}

// MARK: Tokens and health

extension Coffer_V1_IssueTokenResponse {
    public init(_ issued: IssuedToken) {
        self.init()
        token = issued.token.withUnsafeBytes { String(decoding: $0, as: UTF8.self) }
        tokenID = issued.info.id.rawValue
        expiresUnixMs = issued.info.expires.unixMillis
        createdUnixMs = issued.info.created.unixMillis
    }
}

extension IssuedToken {
    /// Reads an IssueToken answer for the request that asked for it.
    public init(_ wire: Coffer_V1_IssueTokenResponse, workflow: WorkflowName, runID: RunID?) throws(CofferError) {
        let id: TokenID
        do { id = try TokenID(wire.tokenID) } catch {
            throw CofferError(.internal, "cofferd sent a malformed token id", cause: error)
        }
        self.init(
            info: TokenInfo(
                id: id,
                workflow: workflow,
                runID: runID,
                created: Date(unixMillis: wire.createdUnixMs),
                expires: Date(unixMillis: wire.expiresUnixMs),
                revoked: nil
            ),
            token: SecretBytes(utf8: wire.token)
        )
    }
}

extension Coffer_V1_HealthResponse {
    public init(_ report: HealthReport) {
        self.init()
        status = report.serving ? "serving" : "not-serving"
        keyID = report.keyID.hex
        reason = report.reason ?? ""
        revision = report.revision
        if let cluster = report.cluster {
            self.cluster = cluster.state.rawValue
            clusterHead = cluster.head
            lastSyncUnixMs = cluster.lastSync?.unixMillis ?? 0
        }
    }
}

extension HealthReport {
    public init(_ wire: Coffer_V1_HealthResponse) throws(CofferError) {
        guard let keyID = KeyID(hex: wire.keyID) else {
            throw CofferError(.internal, "cofferd sent a malformed key id")
        }
        var cluster: ClusterHealth?
        if !wire.cluster.isEmpty {
            guard let state = ClusterHealth.State(rawValue: wire.cluster) else {
                throw CofferError(.internal, "cofferd sent a cluster state of no known kind")
            }
            cluster = ClusterHealth(
                state: state,
                head: wire.clusterHead,
                lastSync: wire.lastSyncUnixMs == 0 ? nil : Date(unixMillis: wire.lastSyncUnixMs)
            )
        }
        self.init(
            serving: wire.status == "serving",
            keyID: keyID,
            reason: wire.reason.isEmpty ? nil : wire.reason,
            revision: wire.revision,
            cluster: cluster
        )
    }
}

// MARK: Key generations

extension Coffer_V1_KeyGeneration {
    public init(_ info: KeyGenerationInfo) {
        self.init()
        number = info.number
        keyID = info.keyID.hex
        state = info.state.rawValue
        createdUnixMs = info.created.unixMillis
        supersededUnixMs = info.superseded?.unixMillis ?? 0
        retiredUnixMs = info.retired?.unixMillis ?? 0
        sealedWritesUntilUnixMs = info.sealedWritesUntil?.unixMillis ?? 0
        fields = UInt64(info.fields)
        records = UInt64(info.records)
        liveTokens = UInt64(info.liveTokens)
    }
}

extension KeyGenerationInfo {
    public init(_ wire: Coffer_V1_KeyGeneration) throws(CofferError) {
        guard let keyID = KeyID(hex: wire.keyID), let state = State(rawValue: wire.state) else {
            throw CofferError(.internal, "cofferd sent a malformed key generation")
        }
        func date(_ millis: Int64) -> Date? { millis == 0 ? nil : Date(unixMillis: millis) }
        self.init(
            number: wire.number,
            keyID: keyID,
            state: state,
            created: Date(unixMillis: wire.createdUnixMs),
            superseded: date(wire.supersededUnixMs),
            retired: date(wire.retiredUnixMs),
            sealedWritesUntil: date(wire.sealedWritesUntilUnixMs),
            fields: Int(clamping: wire.fields),
            records: Int(clamping: wire.records),
            liveTokens: Int(clamping: wire.liveTokens)
        )
    }
}

extension Coffer_V1_KeyStatusResponse {
    public init(_ status: KeyStatus) {
        self.init()
        generations = status.generations.map(Coffer_V1_KeyGeneration.init)
        reencryption.done = status.reencryption.done
        reencryption.recordsCurrent = UInt64(status.reencryption.recordsCurrent)
        reencryption.recordsTotal = UInt64(status.reencryption.recordsTotal)
    }
}

extension KeyStatus {
    public init(_ wire: Coffer_V1_KeyStatusResponse) throws(CofferError) {
        var generations: [KeyGenerationInfo] = []
        for generation in wire.generations { generations.append(try KeyGenerationInfo(generation)) }
        self.init(
            generations: generations,
            reencryption: ReencryptionProgress(
                done: wire.reencryption.done,
                recordsCurrent: Int(clamping: wire.reencryption.recordsCurrent),
                recordsTotal: Int(clamping: wire.reencryption.recordsTotal)
            )
        )
    }
}

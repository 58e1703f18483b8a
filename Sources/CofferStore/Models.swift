import CofferCore
import CofferCrypto
import Foundation

/// What may be known of a connection without its values: never a value byte.
public struct ConnectionInfo: Sendable, Equatable {
    public var ref: ConnectionRef
    /// The names of its fields, sorted.
    public var fields: [FieldName]
    /// 1 when put; grows by one with every overwrite.
    public var version: UInt64
    public var created: Date
    public var updated: Date
    /// The workflows granted this connection, sorted.
    public var grants: [WorkflowName]
}

/// A connection's values, decrypted for a caller that was authorised to get them.
public struct ConnectionValues: Sendable {
    public var ref: ConnectionRef
    public var version: UInt64
    /// Each field's value, in secret storage.
    public var fields: [FieldName: SecretBytes]
}

extension ConnectionValues: CustomStringConvertible {
    public var description: String {
        "ConnectionValues(\(ref), version \(version), fields: \(fields.keys.sorted().map(\.rawValue)), values <redacted>)"
    }
}

/// What is stored about a workflow token: never the token.
public struct TokenInfo: Sendable, Equatable {
    /// Public; names the token for revocation and in the audit trail.
    public var id: String
    public var workflow: WorkflowName
    public var runID: RunID?
    public var created: Date
    public var expires: Date
    /// When it was revoked, or nil while it is live.
    public var revoked: Date?
}

/// A token as issued: its record and the token itself, which is shown once and never stored.
public struct IssuedToken: Sendable {
    public var info: TokenInfo
    public var token: SecretBytes
}

/// Counts and sizes for `cofferd status`; nothing secret.
public struct StoreStatus: Sendable {
    public var formatVersion: UInt32
    public var keyID: KeyID
    public var created: Date
    public var connections: Int
    public var grants: Int
    public var tokens: Int
    public var mapSize: Int
    public var usedBytes: Int
}

/// One request in the audit trail: who (from the kernel), what, on which connection, and how it ended.
/// Never a value or a token.
public struct AuditEvent: Sendable, Equatable {
    /// Assigned by the store when the event is written; 0 before.
    public var sequence: UInt64 = 0
    public var time: Date
    /// "admin" or "worker".
    public var socket: String
    /// The operation's name: "Get", "Put", ...
    public var operation: String
    /// "type/name", or empty when the request named none or named it badly.
    public var connection: String = ""
    public var workflow: String = ""
    public var tokenID: String = ""
    public var runID: String = ""
    public var peerUID: UInt32
    public var peerPID: Int32
    /// The status code the request ended with (0 for OK), numbered as gRPC's.
    public var outcome: Int = 0

    public init(time: Date, socket: String, operation: String, peerUID: UInt32, peerPID: Int32) {
        self.time = time
        self.socket = socket
        self.operation = operation
        self.peerUID = peerUID
        self.peerPID = peerPID
    }
}

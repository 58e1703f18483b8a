/// How a request ended, numbered as gRPC's status codes: the wire's `Code`, the audit trail's outcome and the
/// kind of a `CofferError` are all this one type.
public struct StatusCode: Hashable, Sendable, CustomStringConvertible {
    /// The gRPC status number.
    public let rawValue: Int

    private init(_ rawValue: Int) { self.rawValue = rawValue }

    /// The request succeeded.
    public static let ok = StatusCode(0)
    /// The request is malformed: a bad name, a missing field, a value too large.
    public static let invalidArgument = StatusCode(3)
    /// A deadline passed: a frame was not completed in time.
    public static let deadlineExceeded = StatusCode(4)
    /// The connection, grant or token does not exist.
    public static let notFound = StatusCode(5)
    /// A put for a connection that exists already.
    public static let alreadyExists = StatusCode(6)
    /// The caller is known but may not do this.
    public static let permissionDenied = StatusCode(7)
    /// The store, the disk or a limit is out of room.
    public static let resourceExhausted = StatusCode(8)
    /// The state does not allow the operation: a version mismatch, a wrong key, a store not initialised.
    public static let failedPrecondition = StatusCode(9)
    /// The server failed in a way the caller cannot fix.
    public static let `internal` = StatusCode(13)
    /// The service cannot serve now.
    public static let unavailable = StatusCode(14)
    /// Stored data failed its integrity check: it was altered, moved or corrupted.
    public static let dataLoss = StatusCode(15)
    /// The caller did not prove who it is: a missing, expired, revoked or unknown token.
    public static let unauthenticated = StatusCode(16)

    /// Every code Coffer uses, in number order.
    public static let known: [StatusCode] = [
        .ok, .invalidArgument, .deadlineExceeded, .notFound, .alreadyExists, .permissionDenied,
        .resourceExhausted, .failedPrecondition, .internal, .unavailable, .dataLoss, .unauthenticated,
    ]

    /// The code for a gRPC status number, if Coffer knows it.
    public init?(rawValue: Int) {
        guard let code = Self.known.first(where: { $0.rawValue == rawValue }) else { return nil }
        self = code
    }

    /// The code's name in the protocol: "PERMISSION_DENIED".
    public var name: String {
        description.uppercased().split(separator: " ").joined(separator: "_")
    }

    /// The code's name as people read it: "permission denied".
    public var description: String {
        switch self {
        case .ok: "ok"
        case .invalidArgument: "invalid argument"
        case .deadlineExceeded: "deadline exceeded"
        case .notFound: "not found"
        case .alreadyExists: "already exists"
        case .permissionDenied: "permission denied"
        case .resourceExhausted: "resource exhausted"
        case .failedPrecondition: "failed precondition"
        case .internal: "internal"
        case .unavailable: "unavailable"
        case .dataLoss: "data loss"
        case .unauthenticated: "unauthenticated"
        default: "code \(rawValue)"
        }
    }
}

/// The error every Coffer layer throws to its callers.
///
/// `code` says what kind of failure it is and maps one to one onto the wire's status codes; `message` is
/// written for the person at the other end and never carries a secret value, token or key; `cause` keeps the
/// lower-level error for the server's log and is never sent to a client.
public struct CofferError: Error, Sendable, CustomStringConvertible {
    /// The kind of failure; never `.ok`.
    public typealias Code = StatusCode

    public var code: StatusCode
    public var message: String
    /// The underlying error, for the server's log only.
    public var cause: (any Error)?

    public init(_ code: StatusCode, _ message: String, cause: (any Error)? = nil) {
        precondition(code != .ok, "an error cannot have the status OK")
        self.code = code
        self.message = message
        self.cause = cause
    }

    public var description: String { message }

    /// The cause as a line for the server's log, or an empty string.
    public var causeDescription: String { cause.map { "\($0)" } ?? "" }
}

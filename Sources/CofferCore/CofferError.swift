/// The error every Coffer layer throws to its callers.
///
/// `code` says what kind of failure it is and maps one to one onto the wire's status codes (numbered as
/// gRPC's); `message` is written for the person at the other end and never carries a secret value, token or
/// key; `cause` keeps the lower-level error for the server's log and is never sent to a client.
public struct CofferError: Error, Sendable, CustomStringConvertible {
    /// A kind of failure. Extensible: new codes are new static members, not new enum cases.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        /// The gRPC status number this code is sent as.
        public let rawValue: Int

        private init(_ rawValue: Int) { self.rawValue = rawValue }

        /// A deadline passed: a frame was not completed in time.
        public static let deadlineExceeded = Code(4)
        /// The request is malformed: a bad name, a missing field, a value too large.
        public static let invalidArgument = Code(3)
        /// The connection, grant or token does not exist.
        public static let notFound = Code(5)
        /// A put for a connection that exists already.
        public static let alreadyExists = Code(6)
        /// The caller is known but may not do this.
        public static let permissionDenied = Code(7)
        /// The store or a limit is out of room.
        public static let resourceExhausted = Code(8)
        /// The state does not allow the operation: a version mismatch, a wrong key, a store not initialised.
        public static let failedPrecondition = Code(9)
        /// The server failed in a way the caller cannot fix.
        public static let `internal` = Code(13)
        /// The service cannot serve now.
        public static let unavailable = Code(14)
        /// Stored data failed its integrity check: it was altered, moved or corrupted.
        public static let dataLoss = Code(15)
        /// The caller did not prove who it is: a missing, expired, revoked or unknown token.
        public static let unauthenticated = Code(16)

        public var description: String {
            switch self {
            case .deadlineExceeded: "deadline exceeded"
            case .invalidArgument: "invalid argument"
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

        /// The code for a gRPC status number, if Coffer knows it.
        public init?(rawValue: Int) {
            let known: [Code] = [
                .deadlineExceeded, .invalidArgument, .notFound, .alreadyExists, .permissionDenied, .resourceExhausted,
                .failedPrecondition, .internal, .unavailable, .dataLoss, .unauthenticated,
            ]
            guard let code = known.first(where: { $0.rawValue == rawValue }) else { return nil }
            self = code
        }
    }

    public var code: Code
    public var message: String
    /// The underlying error, for the server's log only.
    public var cause: (any Error)?

    public init(_ code: Code, _ message: String, cause: (any Error)? = nil) {
        self.code = code
        self.message = message
        self.cause = cause
    }

    public var description: String { message }
}

extension CofferError.Code {
    /// The exit status the command-line tools use for this kind of failure: one per kind, so scripts can
    /// tell a missing connection from a refused token. 1 is any other failure; 64 is a usage error.
    public var exitStatus: Int32 {
        switch self {
        case .invalidArgument: 2
        case .notFound: 3
        case .alreadyExists: 4
        case .permissionDenied: 5
        case .unauthenticated: 6
        case .failedPrecondition: 7
        case .resourceExhausted: 8
        case .unavailable: 9
        case .dataLoss: 10
        case .deadlineExceeded: 11
        default: 1
        }
    }
}

import Foundation

/// What an audit record is about: an operation, or something that happened on a socket before any operation
/// could be read.
public enum AuditAction: Hashable, Sendable, CustomStringConvertible {
    case operation(CofferOperation)
    /// A connection refused when it was accepted: a uid outside an allow list.
    case connect
    /// A frame that was not a request, or a request that named no operation.
    case malformed

    /// The name in the trail: the operation's name ("Get"), "Connect" or "Malformed".
    public var name: String {
        switch self {
        case .operation(let operation): operation.rawValue
        case .connect: "Connect"
        case .malformed: "Malformed"
        }
    }

    public init?(name: String) {
        switch name {
        case "Connect": self = .connect
        case "Malformed", "Unknown": self = .malformed
        default:
            guard let operation = CofferOperation(rawValue: name) else { return nil }
            self = .operation(operation)
        }
    }

    public var description: String { name }
}

/// One entry of the audit trail: who (from the kernel), what, on which connection, and how it ended.
/// Only validated names go in, so nothing a client sends (a value pasted in the wrong field, a token) can
/// reach the trail.
public struct AuditEvent: Sendable, Equatable {
    /// Assigned when the event is written; 0 before.
    public var sequence: UInt64 = 0
    public var time: Date
    public var socket: SocketRole
    public var action: AuditAction
    public var connection: ConnectionRef?
    public var workflow: WorkflowName?
    public var tokenID: TokenID?
    public var runID: RunID?
    public var peerUID: UInt32
    public var peerPID: Int32
    /// How the request ended.
    public var outcome: StatusCode = .ok
    /// How many requests this record stands for: more than one when repeated denials of one peer within an
    /// interval are counted in one record.
    public var count: UInt32 = 1

    public init(time: Date, socket: SocketRole, action: AuditAction, peerUID: UInt32, peerPID: Int32) {
        self.time = time
        self.socket = socket
        self.action = action
        self.peerUID = peerUID
        self.peerPID = peerPID
    }

    /// The operation, when the record is about one.
    public var operation: CofferOperation? {
        if case .operation(let operation) = action { return operation }
        return nil
    }

    /// Fills in what a verified token says about its caller.
    public mutating func identify(_ token: TokenInfo) {
        workflow = token.workflow
        tokenID = token.id
        runID = token.runID
    }
}

/// The audit trail's answer to a query: a page of records and where the trail ended when the query began,
/// so that a reader paging with `after` knows when it has seen everything.
public struct AuditPage: Sendable, Equatable {
    public var records: [AuditEvent]
    /// The sequence of the newest record when the query began; 0 for an empty trail.
    public var lastSequence: UInt64

    public init(records: [AuditEvent], lastSequence: UInt64) {
        self.records = records
        self.lastSequence = lastSequence
    }
}

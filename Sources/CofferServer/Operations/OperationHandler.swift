import CofferCore
import CofferStore
import CofferWire

/// One operation's handler: it validates the request (filling the audit record with what it validated) and
/// says how the operation is carried out. Authorisation, audit and encoding are applied around every handler
/// in one place, `RequestPipeline`; a handler does only its operation.
protocol OperationHandler: Sendable {
    var operation: CofferOperation { get }
    func plan(_ request: Coffer_V1_Request.OneOf_Operation, _ context: inout RequestContext) throws(CofferError) -> Plan
}

/// The result a handler produces for the answer.
typealias OperationResult = Coffer_V1_Response.OneOf_Result

/// How an operation is carried out, from cheapest to costliest.
enum Plan: Sendable {
    /// Done already: nothing to read or write.
    case done(OperationResult)
    /// A short read, run on the event loop in the one read transaction the turn's reads share.
    case read(@Sendable (StoreReader, inout AuditEvent) throws -> OperationResult)
    /// A long read (a scan), run on a background thread in a read transaction of its own.
    case scan(@Sendable (StoreReader) throws -> OperationResult)
    /// A change, run in the writer's group commit; its audit record is written in the same transaction.
    /// `prepare`, when given, does the costly part first on a background thread (opening sealed values).
    case write(Write)

    struct Write: Sendable {
        typealias Apply = @Sendable (StoreWriter, inout AuditEvent) throws -> OperationResult
        var prepare: (@Sendable () throws(CofferError) -> Apply)?
        var apply: Apply?
        /// Fold the audit journal into the store first, so that a read of the trail in `apply` sees every
        /// record taken before it.
        var foldsJournalFirst = false

        init(prepare: @escaping @Sendable () throws(CofferError) -> Apply) { self.prepare = prepare }
        init(apply: @escaping Apply, foldsJournalFirst: Bool = false) {
            self.apply = apply
            self.foldsJournalFirst = foldsJournalFirst
        }
    }
}

/// The handlers, one per operation.
struct HandlerTable: Sendable {
    private let handlers: [CofferOperation: any OperationHandler]

    init(_ handlers: [any OperationHandler]) {
        var table: [CofferOperation: any OperationHandler] = [:]
        for handler in handlers {
            precondition(table[handler.operation] == nil, "two handlers for \(handler.operation)")
            table[handler.operation] = handler
        }
        precondition(Set(table.keys) == Set(CofferOperation.allCases), "an operation has no handler")
        self.handlers = table
    }

    subscript(operation: CofferOperation) -> any OperationHandler { handlers[operation]! }
}

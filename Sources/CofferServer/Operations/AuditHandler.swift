import CofferCore
import CofferStore
import CofferWire

/// Audit: a page of the trail and where it ended. It runs in the writer after the journal is folded into the
/// store, so that the page holds every record taken before it, in sequence order without gaps that fill later.
struct AuditHandler: OperationHandler {
    let operation = CofferOperation.audit
    /// The most records one answer carries.
    static let maxPage = 1000

    func plan(_ request: Coffer_V1_Request.OneOf_Operation, _ context: inout RequestContext) throws(CofferError) -> Plan
    {
        guard case .audit(let query) = request else { throw mismatch() }
        let limit = query.limit == 0 ? Self.maxPage : min(Int(query.limit), Self.maxPage)
        let after = query.afterSequence
        return .write(
            .init(
                apply: { writer, _ in
                    .audit(Coffer_V1_AuditResponse(try writer.reader.auditPage(after: after, limit: limit)))
                },
                foldsJournalFirst: true
            )
        )
    }
}

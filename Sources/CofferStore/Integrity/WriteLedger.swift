import CofferCore
import CofferCrypto

/// What one write transaction changed among the authenticated records: the changes to apply to the map of what
/// cofferd wrote once it commits, and the changes to each table's count and summary, written to the metadata
/// record in the same transaction. A nested transaction keeps a ledger of its own, merged into its parent's
/// when it commits and dropped when it is undone.
final class WriteLedger {
    struct Change {
        let table: String
        let key: [UInt8]
        /// The record's tag now; nil when it was removed.
        let tag: [UInt8]?
        /// The record as stored now; nil when it was removed.
        let stored: [UInt8]?
    }

    private(set) var changes: [Change] = []
    /// Per table: records added minus records removed, and the XOR of the elements added and removed.
    private(set) var counts: [String: Int64] = [:]
    private(set) var summaries: [String: [UInt8]] = [:]
    /// Where the audit chain stands after a fold in this transaction.
    var audit: AuditChain?
    /// Changes to the metadata record's own fields (key generations, the re-encryption's cursor), in order.
    private(set) var metadataEdits: [(inout Coffer_Storage_V1_Metadata) -> Void] = []
    /// The changes recorded in the change feed here, in revision order.
    private(set) var events: [ChangeEvent] = []
    /// The latest tag of each key changed here, for reads within the transaction.
    private var latest: [LedgerKey: [UInt8]?] = [:]

    private struct LedgerKey: Hashable {
        let table: String
        let key: [UInt8]
    }

    /// Notes that `key` of `table` went from `old` to `new` (nil: absent).
    func record(table: String, key: [UInt8], old: [UInt8]?, new: [UInt8]?, stored: [UInt8]?, keys: KeyRing) {
        var delta = summaries[table] ?? [UInt8](repeating: 0, count: KeyRing.summaryLength)
        if let old { xorInto(&delta, keys.summaryElement(table: table, key: key, tag: old)) }
        if let new { xorInto(&delta, keys.summaryElement(table: table, key: key, tag: new)) }
        summaries[table] = delta
        counts[table, default: 0] += (new == nil ? 0 : 1) - (old == nil ? 0 : 1)
        changes.append(Change(table: table, key: key, tag: new, stored: stored))
        latest[LedgerKey(table: table, key: key)] = .some(new)
    }

    /// Notes a change recorded in the change feed, to announce once the transaction commits.
    func recordEvent(_ event: ChangeEvent) { events.append(event) }

    /// Changes the metadata record when the transaction commits.
    func editMetadata(_ edit: @escaping (inout Coffer_Storage_V1_Metadata) -> Void) {
        metadataEdits.append(edit)
    }

    /// `base` with the metadata edits of this transaction and those it is nested in.
    func metadata(from base: Coffer_Storage_V1_Metadata) -> Coffer_Storage_V1_Metadata {
        var record = parent?.metadata(from: base) ?? base
        for edit in metadataEdits { edit(&record) }
        return record
    }

    /// The ledger of the transaction this one is nested in.
    let parent: WriteLedger?

    init(parent: WriteLedger? = nil) { self.parent = parent }

    /// The tag this transaction (or one it is nested in) gave `key` of `table`: `.some(nil)` when it removed the
    /// record; nil when none touched it.
    func latestTag(table: String, key: [UInt8]) -> [UInt8]?? {
        latest[LedgerKey(table: table, key: key)] ?? parent?.latestTag(table: table, key: key)
    }

    /// Takes in what a nested transaction did, once it has committed.
    func merge(_ child: WriteLedger) {
        changes += child.changes
        for (table, count) in child.counts { counts[table, default: 0] += count }
        for (table, delta) in child.summaries {
            var mine = summaries[table] ?? [UInt8](repeating: 0, count: KeyRing.summaryLength)
            xorInto(&mine, delta)
            summaries[table] = mine
        }
        latest.merge(child.latest) { _, new in new }
        if let chain = child.audit { audit = chain }
        metadataEdits += child.metadataEdits
        events += child.events
    }
}

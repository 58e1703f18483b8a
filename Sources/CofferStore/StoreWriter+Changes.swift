import CofferCore
import Foundation

extension StoreWriter {
    /// The revision of the last change recorded in this transaction (or one nested in it), nil for none.
    public var lastRevision: UInt64? { txn.ledger?.events.last?.revision }

    /// Records a change under the next revision, in this transaction, and drops the oldest records past
    /// `StoreLimits.maxChangeRecords`. The revision lives in the metadata record, whose edits a nested
    /// transaction undoes with its changes, so revisions stay gapless. Returns it.
    @discardableResult
    func recordChange(
        _ kind: ChangeEvent.Kind,
        connection: ConnectionRef? = nil,
        workflow: WorkflowName? = nil,
        tokenID: TokenID? = nil,
        version: UInt64 = 0
    ) throws -> UInt64 {
        guard let ledger = txn.ledger else { throw CofferError(.internal, "a change is recorded only in a write") }
        let current = metadata
        let revision = current.revision + 1
        let event = ChangeEvent(
            revision: revision,
            time: now,
            kind: kind,
            connection: connection,
            workflow: workflow,
            tokenID: tokenID,
            version: version
        )
        try tables.changes.append(event, txn)
        var first = current.changesFirst == 0 ? revision : current.changesFirst
        let kept = UInt64(max(store.configuration.limits.maxChangeRecords, 1))
        while revision - first + 1 > kept {
            try tables.changes.remove(first, txn)
            first += 1
        }
        let oldest = first
        ledger.editMetadata { metadata in
            metadata.revision = revision
            metadata.changesFirst = oldest
        }
        ledger.recordEvent(event)
        return revision
    }
}

extension StoreReader {
    /// The changes after `revision`, oldest first, at most `limit`; nil when changes after it were dropped
    /// already (whoever follows the feed must start over from `changeRange`).
    public func changes(after revision: UInt64, limit: Int) throws -> [ChangeEvent]? {
        let range = try changeRange()
        if revision + 1 < range.first && revision < range.head { return nil }
        return try tables.changes.after(revision, limit: limit, txn)
    }

    /// The newest revision, and the oldest still kept (the newest plus one when none is).
    public func changeRange() throws -> (first: UInt64, head: UInt64) {
        let metadata: Coffer_Storage_V1_Metadata
        if let ledger = txn.ledger {
            metadata = ledger.metadata(from: store.currentMetadata)
        } else {
            guard case .format2(let stored)? = try tables.meta.read(keys: store.keys, txn) else {
                throw CofferError(.dataLoss, "the store's metadata record is missing")
            }
            metadata = stored
        }
        return (metadata.changesFirst == 0 ? metadata.revision + 1 : metadata.changesFirst, metadata.revision)
    }
}

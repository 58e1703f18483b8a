import CofferCore
import CofferCrypto
import Foundation

/// The tables whose every record is tagged, counted in the store-wide summary, and checked against what cofferd
/// last wrote. (The audit trail is a hash chain instead; the metadata record holds the summary.)
enum AuthenticatedTable: String, CaseIterable, Sendable {
    case connections
    case grants
    case tokens
    case auditPending = "audit_pending"
    case changes
}

/// A record's tag, as two words, for the map of what cofferd wrote.
struct RecordTag: Hashable, Sendable {
    let high: UInt64
    let low: UInt64

    init(_ bytes: [UInt8]) {
        precondition(bytes.count == 16)
        high = bytes.prefix(8).reduce(0) { $0 << 8 | UInt64($1) }
        low = bytes.suffix(8).reduce(0) { $0 << 8 | UInt64($1) }
    }
}

/// Why a stored record is refused.
struct RecordFailure: Error {
    let table: String
    let key: String
    let reason: String

    var error: CofferError {
        CofferError(.dataLoss, "record \(key) of \(table) \(reason): the store was altered")
    }
}

/// A read whose snapshot cannot be checked against the map of what cofferd wrote (the key changed after the
/// snapshot, or the snapshot's commit is not in the map yet): it is retried with a fresh snapshot.
struct StaleSnapshot: Error {}

/// Tags and checks every authenticated record, and remembers what cofferd wrote.
///
/// A stored record is `message | generation (4, big-endian) | tag (16)`. Reading one checks its tag (an edit,
/// a field dropped or added, a key id flipped), and, once the store has been verified, that its tag is the one
/// cofferd last wrote under that key (a record rolled back to an older copy, replayed from before a delete,
/// injected or removed). cofferd is the only writer, so it can hold what it wrote: a keyed digest of each
/// record's table and key, mapped to its tag and the transaction that wrote it, about 90 bytes a record. A key
/// removed is kept as a tombstone while a read older than its removal may still be running. A read checks a
/// record against the map when the key last changed at or before its snapshot; a key changed since is retried
/// with a fresh snapshot (or, for a tolerant scan, taken as the older copy its snapshot holds).
final class RecordAuthority: @unchecked Sendable {
    // Safe to share: everything mutable is under `condition`.
    private let condition = NSCondition()
    private var ring: KeyRing
    private struct Entry {
        /// nil for a tombstone: the key's record was removed.
        var tag: RecordTag?
        var transaction: Int
    }
    private var written: [RecordTag: Entry] = [:]
    private var tombstones = 0
    /// The LMDB transaction the map describes; nil while the map is not kept (before verification).
    private var applied: Int?
    /// The transaction cofferd is committing, whose changes the map does not hold yet.
    private var committing: Int?
    /// Reads in flight, by the lowest snapshot each may have: tombstones newer than the lowest are kept.
    private var readers: [Int: Int] = [:]

    static let trailerLength = 4 + KeyRing.tagLength

    init(keys: KeyRing) { ring = keys }

    var keys: KeyRing {
        get { condition.withLock { ring } }
        set { condition.withLock { ring = newValue } }
    }

    /// A record ready to store: `payload`, its generation and its tag.
    func seal(table: String, key: [UInt8], payload: [UInt8]) -> (stored: [UInt8], tag: [UInt8]) {
        let keys = self.keys
        let tag = keys.recordTag(table: table, key: key, payload: payload[...], generation: keys.active)
        return (payload + KeyRing.bigEndian32(keys.active.number) + tag, tag)
    }

    /// The payload of a stored record, if its tag verifies under the generation it names.
    func open(table: String, key: [UInt8], stored: [UInt8]) throws(RecordFailure) -> (payload: [UInt8], tag: [UInt8]) {
        let opened = try openWithGeneration(table: table, key: key, stored: stored)
        return (opened.payload, opened.tag)
    }

    /// The same, with the number of the generation whose key tagged it.
    func openWithGeneration(
        table: String,
        key: [UInt8],
        stored: [UInt8]
    ) throws(RecordFailure) -> (payload: [UInt8], tag: [UInt8], generation: UInt32) {
        let keys = self.keys
        guard stored.count >= Self.trailerLength else {
            throw RecordFailure(table: table, key: Self.name(key), reason: "is too short to be a record")
        }
        let payloadEnd = stored.count - Self.trailerLength
        let number = stored[payloadEnd..<(payloadEnd + 4)].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        guard let generation = keys.generations[number] else {
            throw RecordFailure(
                table: table,
                key: Self.name(key),
                reason: "names a key generation the store does not have"
            )
        }
        let tag = Array(stored[(payloadEnd + 4)...])
        let expected = keys.recordTag(table: table, key: key, payload: stored[..<payloadEnd], generation: generation)
        guard ConstantTime.equals(tag, expected) else {
            throw RecordFailure(table: table, key: Self.name(key), reason: "failed its integrity check")
        }
        return (Array(stored[..<payloadEnd]), tag, number)
    }

    /// Checks a record read in snapshot `snapshot` against what cofferd last wrote; `tag` nil when the key
    /// held no record. A `tolerant` read takes a record changed after its snapshot as it is.
    func check(table: String, key: [UInt8], tag: [UInt8]?, snapshot: Int, tolerant: Bool = false) throws {
        let digest = RecordTag(keys.recordDigest(table: table, key: key))
        let entry: Entry?
        do {
            condition.lock()
            defer { condition.unlock() }
            guard var applied else { return }
            // cofferd's own commit, not yet in the map: wait for it (moments), then decide.
            let deadline = Date().addingTimeInterval(1)
            while snapshot > applied, snapshot == committing {
                guard condition.wait(until: deadline) else { throw StaleSnapshot() }
                applied = self.applied ?? applied
            }
            entry = written[digest]
        }
        if let entry, entry.transaction > snapshot {
            // Changed after this snapshot: its copy is an older one, which the map no longer describes.
            if tolerant { return }
            throw StaleSnapshot()
        }
        // The map decides: what cofferd wrote at or before the snapshot (or, newer than the map without a
        // commit of cofferd's, another process wrote the store).
        switch (entry?.tag, tag) {
        case (nil, nil):
            return
        case (nil, _?):
            throw RecordFailure(table: table, key: Self.name(key), reason: "is not one cofferd wrote")
        case (_?, nil):
            throw RecordFailure(table: table, key: Self.name(key), reason: "was removed")
        case (let written?, let tag?):
            guard written == RecordTag(tag) else {
                throw RecordFailure(table: table, key: Self.name(key), reason: "is not the copy cofferd last wrote")
            }
        }
    }

    /// Whether a read in snapshot `snapshot` began before cofferd's latest commit was applied.
    func isStale(_ snapshot: Int) -> Bool {
        condition.withLock { applied.map { snapshot < $0 } ?? false }
    }

    /// Before a read transaction begins: returns a bound on its snapshot, to give to `endRead`.
    func beginRead() -> Int {
        condition.withLock {
            let bound = applied ?? 0
            readers[bound, default: 0] += 1
            return bound
        }
    }

    func endRead(_ bound: Int) {
        condition.withLock {
            readers[bound, default: 1] -= 1
            if readers[bound] == 0 { readers[bound] = nil }
        }
    }

    /// Before a commit: its transaction will not be in the map until `apply` (or, if it failed, nil).
    func committing(_ transaction: Int?) {
        condition.withLock {
            committing = transaction
            condition.broadcast()
        }
    }

    /// After a commit: what it changed, as of LMDB transaction `transaction`.
    func apply(_ changes: [WriteLedger.Change], transaction: Int) {
        let keys = self.keys
        let digests = changes.map { RecordTag(keys.recordDigest(table: $0.table, key: $0.key)) }
        condition.withLock {
            for (digest, change) in zip(digests, changes) {
                let previous = written.updateValue(
                    Entry(tag: change.tag.map(RecordTag.init), transaction: transaction),
                    forKey: digest
                )
                if change.tag == nil, previous?.tag != nil || previous == nil { tombstones += 1 }
                if change.tag != nil, let previous, previous.tag == nil { tombstones -= 1 }
            }
            if applied != nil { applied = transaction }
            committing = nil
            if tombstones > max(4096, written.count / 4) { pruneTombstones() }
            condition.broadcast()
        }
    }

    /// Drops the tombstones no read in flight can need: those no newer than the lowest snapshot a read may have.
    private func pruneTombstones() {
        let oldest = min(readers.keys.min() ?? Int.max, applied ?? Int.max)
        written = written.filter { $0.value.tag != nil || $0.value.transaction > oldest }
        tombstones = written.values.reduce(0) { $0 + ($1.tag == nil ? 1 : 0) }
    }

    /// Starts keeping the map, from a verification that read every record in LMDB transaction `transaction`.
    func start(with records: [(table: String, key: [UInt8], tag: [UInt8])], transaction: Int) {
        let keys = self.keys
        var map: [RecordTag: Entry] = [:]
        map.reserveCapacity(records.count)
        for record in records {
            map[RecordTag(keys.recordDigest(table: record.table, key: record.key))] = Entry(
                tag: RecordTag(record.tag),
                transaction: 0
            )
        }
        condition.withLock {
            written = map
            tombstones = 0
            applied = transaction
        }
    }

    /// Records held in the map.
    var count: Int { condition.withLock { written.count - tombstones } }

    /// A key as it may appear in a message: keys hold only validated names, ids and numbers.
    static func name(_ key: [UInt8]) -> String {
        if key.count == 8, key.contains(where: { $0 < 0x20 || $0 > 0x7e }) {
            return "#\(key.reduce(UInt64(0)) { $0 << 8 | UInt64($1) })"
        }
        return String(decoding: key.map { $0 == 0 ? UInt8(ascii: " ") : $0 }, as: UTF8.self)
    }
}

extension KeyRing {
    static func bigEndian32(_ value: UInt32) -> [UInt8] {
        [
            UInt8(value >> 24), UInt8(truncatingIfNeeded: value >> 16), UInt8(truncatingIfNeeded: value >> 8),
            UInt8(truncatingIfNeeded: value),
        ]
    }
}

internal import CSodium
import CofferCore

/// What authenticates the store's records: a keyed hash of each record (under its generation's record key), a
/// keyed element per record for the store-wide summary (a set hash: the XOR of every record's element, so that
/// a write updates it by removing the old element and adding the new), and the audit trail's hash chain.
/// Nobody without the master key can make a record, an element or a link that verifies.
extension KeyRing {
    /// Bytes in a record's authentication tag and in an audit link.
    public static let tagLength = 16
    /// Bytes in the store-wide summary.
    public static let summaryLength = 32

    /// The tag of a stored record: over its table, its key, its payload and the generation that tags it.
    public func recordTag(
        table: String,
        key: [UInt8],
        payload: ArraySlice<UInt8>,
        generation: KeyGeneration
    )
        -> [UInt8]
    {
        var input = Self.labelled("coffer.record.v2", table, key)
        input += payload
        input += Self.bigEndian(UInt64(generation.number))
        return Self.hash(input, length: Self.tagLength, key: generation.recordKey)
    }

    /// A record's element of the store-wide summary: it stands for the record's table, key and tag.
    public func summaryElement(table: String, key: [UInt8], tag: [UInt8]) -> [UInt8] {
        Self.hash(Self.labelled("coffer.summary.v2", table, key) + tag, length: Self.summaryLength, key: summaryKey)
    }

    /// The tag of the store's metadata record, under a key that no rotation changes: the metadata says which
    /// generations there are.
    public func metadataTag(_ payload: ArraySlice<UInt8>) -> [UInt8] {
        var input = Array("coffer.metadata.v2".utf8)
        input += payload
        return Self.hash(input, length: Self.tagLength, key: summaryKey)
    }

    /// A short keyed digest of a record's table and key, by which cofferd remembers what it wrote.
    public func recordDigest(table: String, key: [UInt8]) -> [UInt8] {
        Self.hash(Self.labelled("coffer.digest.v2", table, key), length: 16, key: summaryKey)
    }

    /// The link of an audit record: over the link before it, its sequence number and its bytes.
    public func auditLink(previous: [UInt8], sequence: UInt64, entry: ArraySlice<UInt8>) -> [UInt8] {
        var input = Array("coffer.audit.v2".utf8) + previous + Self.bigEndian(sequence)
        input += entry
        return Self.hash(input, length: Self.tagLength, key: auditKey)
    }

    /// The link of a batch of a cluster's replication log: over the link before it, its revisions and its bytes.
    /// Every node derives the same key from the master key; the database holding the log never sees it.
    public func replicationLink(previous: [UInt8], first: UInt64, last: UInt64, batch: [UInt8]) -> [UInt8] {
        var input = Array("coffer.replication.v1".utf8) + previous + Self.bigEndian(first) + Self.bigEndian(last)
        input += batch
        return Self.hash(input, length: Self.tagLength, key: summaryKey)
    }

    /// The tag of a journal entry, so that an edited entry is told from a torn one.
    public func journalTag(_ bytes: ArraySlice<UInt8>) -> [UInt8] {
        Self.hash(Array("coffer.journal.v2".utf8) + bytes, length: Self.tagLength, key: auditKey)
    }

    /// The link before the first audit record of a store.
    public static let firstAuditLink = [UInt8](repeating: 0, count: tagLength)

    private static func labelled(_ label: String, _ table: String, _ key: [UInt8]) -> [UInt8] {
        var out = Array(label.utf8) + [0] + Array(table.utf8) + [0]
        out += bigEndian(UInt64(key.count))
        out += key
        return out
    }

    static func bigEndian(_ value: UInt64) -> [UInt8] {
        (0..<8).reversed().map { UInt8(truncatingIfNeeded: value >> ($0 * 8)) }
    }
}

/// XORs `other` into `summary`, element by element: adding or removing a record's element.
public func xorInto(_ summary: inout [UInt8], _ other: [UInt8]) {
    precondition(summary.count == other.count)
    for index in summary.indices { summary[index] ^= other[index] }
}

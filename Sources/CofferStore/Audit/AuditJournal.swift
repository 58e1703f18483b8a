import CofferCore
import CofferCrypto
import Foundation

/// The audit trail's front: records of requests that change nothing (Gets, reads, denials) are appended here
/// with one `write` per batch before their answers go out, which survives `kill -9` of cofferd at no sync's
/// cost; the writer folds them into the store's audit chain (synced transactions) at least every second, and
/// only then is the file they were in replaced by an empty one.
///
/// Two files take turns: appends go to the active one while the other is folded, so a fold never holds up an
/// append. Records wait on disk, not in memory: a store that refuses them (a full map) or a writer busy for a
/// while costs disk up to `maxPendingBytes`, past which appends are refused (the request that needed the record
/// is refused with why, and the value withheld). An entry is
/// `length (4, little-endian) | number (8, little-endian) | AuditEntry | tag (16)`, the tag a keyed BLAKE2b of
/// the three. Numbers follow one another without gaps across both files; the store keeps the number of the last
/// record folded, so that a fold repeated after a crash skips what it already folded, and a record removed from
/// a journal is a gap that refuses the start. A torn entry at the end (a write cut short by a crash) fails its
/// tag and is dropped. A file is emptied by putting a new empty file in its place (never by truncating it), so
/// that `cofferd verify` beside a serving cofferd reads each file as a consistent prefix.
public final class AuditJournal: @unchecked Sendable {
    // Safe to share: all state is under `lock`.
    private let lock = NSLock()
    private var files: [JournalFile]
    private var active = 0
    /// Set when a failed write could not be undone: appends are refused until that file is folded and replaced.
    private var broken: CofferError?
    /// Why the store refused the last fold; nil once one succeeds.
    private var refused: CofferError?
    private var nextNumber: UInt64
    private var lastReport: ContinuousClock.Instant?
    private let store: ConnectionStore
    /// Bytes waiting to be folded, over both files, past which appends are refused.
    public let maxPendingBytes: Int
    /// Past this many pending records the owner is asked to fold early.
    public let foldThreshold: Int
    /// Called (outside the lock) when the pending records pass `foldThreshold`.
    private let onThreshold: @Sendable () -> Void
    /// Told (at most every ten seconds) why appends are refused: a constant message and the error.
    private let report: @Sendable (String, CofferError) -> Void

    static let fileNames = ["audit-0.journal", "audit-1.journal"]
    static let checksumLength = KeyRing.tagLength
    static let headerLength = 12
    /// Records folded into the store per transaction.
    static let foldChunk = 16_384

    /// Opens the journal of the store's directory, first folding into the store whatever a previous cofferd
    /// left in it, oldest first. DATA_LOSS when a journal is altered (a record removed from between others, or
    /// an entry that fails its tag with whole entries after it). Only the process that holds the directory's
    /// lock may open it.
    public static func open(
        store: ConnectionStore,
        maxPendingBytes: Int = 256 << 20,
        foldThreshold: Int = 4_096,
        onThreshold: @escaping @Sendable () -> Void = {},
        report: @escaping @Sendable (String, CofferError) -> Void = { _, _ in }
    ) throws(CofferError) -> (AuditJournal, Recovery) {
        let directory = store.configuration.directory
        let files = try fileNames.map { name throws(CofferError) in
            try JournalFile(path: (directory as NSString).appendingPathComponent(name))
        }
        let metadata = store.currentMetadata
        let numbered = metadata.journalNumbered
        // Before journal numbers, an entry carried its sequence in the chain: those at or below the head are in
        // (unless a conversion cut short already folded some and noted the last).
        var folded =
            numbered || metadata.journalFolded > 0 ? metadata.journalFolded : metadata.auditHeadSequence
        var recovery = Recovery()
        var highest = folded
        // Oldest first: the files' numbers never interleave.
        var scans: [(file: JournalFile, first: UInt64)] = []
        for file in files {
            let scan = try file.scan(keys: store.keys, numbered: numbered)
            recovery.droppedBytes += scan.tornBytes
            if let first = scan.first { scans.append((file, first)) }
            highest = max(highest, scan.last ?? 0)
            store.auditOrder.raise(to: scan.lastOrder ?? 0)
        }
        let ordered = scans.sorted(by: { $0.first < $1.first })
        for (index, (file, _)) in ordered.enumerated() {
            // The records of changes wait behind the journal records taken before them.
            let later = index + 1 < ordered.count ? ordered[index + 1].file.firstOrder : nil
            try file.read(keys: store.keys, numbered: numbered, chunk: foldChunk) {
                records,
                last throws(CofferError) in
                let fresh = records.filter { $0.number > folded }
                guard let newest = fresh.last else { return }
                if numbered, fresh[0].number != folded + 1 { throw missing(folded + 1, fresh[0].number - 1) }
                let through = last ? (later.map { $0 - 1 } ?? .max) : newest.order
                try store.write { writer in
                    // Before journal numbers too, the number of the last record folded is noted, so that a
                    // conversion cut short by a crash resumes after it.
                    try writer.foldAudit(
                        fresh.map { ($0.order, $0.event) },
                        journalThrough: newest.number,
                        pendingThrough: through
                    )
                }
                recovery.records += fresh.count
                folded = newest.number
            }
        }
        if !numbered {
            // From here on the journal numbers its records, and the chain has no gaps after its current head.
            let through = highest
            try store.write { writer in
                try writer.foldAudit([])
                try writer.editMetadata { metadata in
                    metadata.journalNumbered = true
                    metadata.journalFolded = through
                    metadata.auditGaplessAfter = metadata.auditHeadSequence
                }
            }
        }
        for file in files { try file.reset() }
        let journal = AuditJournal(
            store: store,
            files: files,
            nextNumber: max(store.currentMetadata.journalFolded, highest) + 1,
            maxPendingBytes: maxPendingBytes,
            foldThreshold: foldThreshold,
            onThreshold: onThreshold,
            report: report
        )
        return (journal, recovery)
    }

    static func missing(_ from: UInt64, _ to: UInt64) -> CofferError {
        CofferError(.dataLoss, "the audit journal lacks records \(from) to \(to): it was altered")
    }

    /// What is wrong with the journal files in `directory`, read without changing them (a serving cofferd may
    /// append meanwhile: each file is read as a prefix of itself).
    static func problems(in directory: String, keys: KeyRing, numbered: Bool) -> [CofferError] {
        var problems: [CofferError] = []
        for name in fileNames {
            let path = (directory as NSString).appendingPathComponent(name)
            guard FileManager.default.fileExists(atPath: path) else { continue }
            do throws(CofferError) {
                _ = try JournalFile(path: path, readOnly: true).scan(keys: keys, numbered: numbered)
            } catch {
                problems.append(error)
            }
        }
        return problems
    }

    /// What recovery found at start.
    public struct Recovery: Sendable {
        /// Records folded into the store.
        public var records = 0
        /// Bytes of a torn entry at a file's end, dropped.
        public var droppedBytes = 0
    }

    private init(
        store: ConnectionStore,
        files: [JournalFile],
        nextNumber: UInt64,
        maxPendingBytes: Int,
        foldThreshold: Int,
        onThreshold: @escaping @Sendable () -> Void,
        report: @escaping @Sendable (String, CofferError) -> Void
    ) {
        self.store = store
        self.files = files
        self.nextNumber = nextNumber
        self.maxPendingBytes = maxPendingBytes
        self.foldThreshold = foldThreshold
        self.onThreshold = onThreshold
        self.report = report
    }

    /// Appends `events` with one write, numbered after the last. When the write fails nothing is kept and no
    /// number is used, and the error says why: the caller must then withhold what the records were for.
    public func append(_ events: [AuditEvent]) throws(CofferError) {
        guard !events.isEmpty else { return }
        var bytes: [UInt8] = []
        let keys = store.keys
        lock.lock()
        let pending: Int
        do {
            defer { lock.unlock() }
            if let broken { throw broken }
            let waiting = files.reduce(0) { $0 + $1.size }
            let order = store.auditOrder.take(events.count)
            for (index, event) in events.enumerated() {
                let offset = UInt64(index)
                Self.encode(event, number: nextNumber + offset, order: order + offset, keys: keys, into: &bytes)
            }
            guard waiting + bytes.count <= maxPendingBytes else { throw refusal(waiting) }
            let file = files[active]
            do {
                try file.append(bytes, firstOrder: order, count: events.count)
            } catch {
                // A write that failed and could not be cut back, or a disk that fails: this file takes no more,
                // and cofferd says it is not serving.
                if error.code == .unavailable {
                    broken = error
                    store.markFailed(error)
                }
                throw error
            }
            nextNumber += UInt64(events.count)
            pending = files.reduce(0) { $0 + $1.count }
        }
        if pending >= foldThreshold { onThreshold() }
    }

    /// RESOURCE_EXHAUSTED saying why records wait; reported (outside the lock's callers' way) at most every ten
    /// seconds.
    private func refusal(_ waiting: Int) -> CofferError {
        let records = files.reduce(0) { $0 + $1.count }
        let why =
            refused.map { "the store refuses them: \($0.message)" }
            ?? "the store's writer has not folded them yet (it is busy, or stopped)"
        let error = CofferError(
            .resourceExhausted,
            "the audit trail cannot take more records: \(records) records (\(waiting >> 20) MiB) wait in its journal to be written to the store, and \(why)"
        )
        let now = ContinuousClock.now
        if lastReport.map({ now - $0 > .seconds(10) }) ?? true {
            lastReport = now
            report("requests that need an audit record are refused: the audit journal is full", error)
        }
        return error
    }

    /// Folds what waits into the store with `commit` (one write transaction per chunk, given the records, the
    /// number of the last, and the place in line up to which the records of changes join them), oldest first: the file a failed fold left, then the active one, which appends
    /// switch away from. A file is emptied once all of it is in. Returns how many records it folded; on a
    /// failure what is left waits for the next time, and appends say why they are refused once the journal is
    /// full.
    @discardableResult
    func fold(
        _ commit: ([(order: UInt64, event: AuditEvent)], UInt64, _ pendingThrough: UInt64) throws(CofferError) -> Void
    ) throws(CofferError) -> Int {
        var total = 0
        let leftover = lock.withLock { () -> Int? in
            let sealed = 1 - active
            return files[sealed].count > 0 || files[sealed].size > 0 ? sealed : nil
        }
        if let leftover { total += try fold(file: leftover, commit) }
        let switched = lock.withLock { () -> Int? in
            let leaving = active
            guard files[1 - leaving].size == 0, files[leaving].count > 0 || broken != nil else { return nil }
            active = 1 - leaving
            return leaving
        }
        if let switched { total += try fold(file: switched, commit) }
        return total
    }

    /// Folds one file appends no longer go to, then empties it.
    private func fold(
        file index: Int,
        _ commit: ([(order: UInt64, event: AuditEvent)], UInt64, _ pendingThrough: UInt64) throws(CofferError) -> Void
    ) throws(CofferError) -> Int {
        var total = 0
        // Appends go to the other file from here on: what it holds, and all it gets, was taken later.
        let (file, later) = lock.withLock { (files[index], files[1 - index].firstOrder) }
        do throws(CofferError) {
            try file.read(keys: store.keys, numbered: true, chunk: Self.foldChunk) {
                records,
                last throws(CofferError) in
                let folded = store.currentMetadata.journalFolded
                let fresh = records.filter { $0.number > folded }
                guard let newest = fresh.last else { return }
                // A record cut from the journal while cofferd runs is found here as it would be at start.
                guard fresh[0].number == folded + 1 else { throw Self.missing(folded + 1, fresh[0].number - 1) }
                // The records of changes join with the journal records taken after them: not before.
                let through = last ? (later.map { $0 - 1 } ?? .max) : newest.order
                try commit(fresh.map { ($0.order, $0.event) }, newest.number, through)
                total += fresh.count
            }
            lock.lock()
            defer { lock.unlock() }
            try file.reset()
            if index != active { broken = nil }
            refused = nil
        } catch {
            lock.withLock { refused = error }
            throw error
        }
        return total
    }

    /// Flushes both files to the disk.
    public func sync() throws(CofferError) {
        let files = lock.withLock { self.files }
        for file in files { try file.sync() }
    }

    /// Records appended and not yet folded into the store.
    public var pendingCount: Int { lock.withLock { files.reduce(0) { $0 + $1.count } } }

    /// Closes both files; what they hold stays for the next start to fold.
    public func close() {
        lock.withLock { for file in files { file.close() } }
    }

    static func encode(_ event: AuditEvent, number: UInt64, order: UInt64, keys: KeyRing, into bytes: inout [UInt8]) {
        // Serialising a message built here cannot fail.
        let body: [UInt8] = (try? AuditLog.entry(event, order: order).serializedBytes()) ?? []
        let start = bytes.count
        appendLittleEndian(UInt32(body.count), to: &bytes)
        appendLittleEndian(number, to: &bytes)
        bytes += body
        bytes += keys.journalTag(bytes[start...])
    }

    /// The entry at `offset` of `bytes` and where the next begins, if it is whole and its tag verifies.
    static func entry(at offset: Int, in bytes: [UInt8], keys: KeyRing) -> (JournalRecord, Int)? {
        guard bytes.count - offset >= headerLength + checksumLength else { return nil }
        let length = Int(readLittleEndian(UInt32.self, bytes, at: offset))
        let end = offset + headerLength + length
        guard length <= maxEntryLength, end + checksumLength <= bytes.count else { return nil }
        let tag = keys.journalTag(bytes[offset..<end])
        guard ConstantTime.equals(tag, Array(bytes[end..<(end + checksumLength)])) else { return nil }
        let number = readLittleEndian(UInt64.self, bytes, at: offset + 4)
        guard
            let entry = try? Coffer_Storage_V1_AuditEntry(serializedBytes: Array(bytes[(offset + headerLength)..<end])),
            let event = try? AuditLog.event(number, entry)
        else { return nil }
        // Entries from before journal numbers carried their place in line as their number.
        let order = entry.order != 0 ? entry.order : number
        return (JournalRecord(number: number, order: order, event: event), end + checksumLength)
    }

    /// Whether the bytes from `offset` on (which do not start with a valid entry) are a write cut short, or an
    /// altered entry with a whole one after it.
    static func isAltered(at offset: Int, in bytes: [UInt8], keys: KeyRing) -> Bool {
        guard bytes.count - offset >= headerLength else { return false }
        let length = Int(readLittleEndian(UInt32.self, bytes, at: offset))
        let following = offset + headerLength + length + checksumLength
        return length <= maxEntryLength && following < bytes.count && entry(at: following, in: bytes, keys: keys) != nil
    }

    static let maxEntryLength = 1 << 20
}

/// One record of a journal: its number in the journal, its place in line, and the record.
struct JournalRecord {
    let number: UInt64
    let order: UInt64
    let event: AuditEvent
}

private func appendLittleEndian<T: FixedWidthInteger>(_ value: T, to bytes: inout [UInt8]) {
    withUnsafeBytes(of: value.littleEndian) { bytes += $0 }
}

private func readLittleEndian<T: FixedWidthInteger>(_: T.Type, _ bytes: [UInt8], at offset: Int) -> T {
    var value = T.zero
    withUnsafeMutableBytes(of: &value) { $0.copyBytes(from: bytes[offset..<(offset + MemoryLayout<T>.size)]) }
    return T(littleEndian: value)
}

import CofferCore
import CofferCrypto
import Foundation

/// The audit trail's front: records of requests that change nothing (Gets, reads, denials) are appended here
/// with one `write` per batch before their answers go out, which survives `kill -9` of cofferd at no sync's
/// cost; the commit queue folds them into the store's audit table (one synced transaction) at least every
/// second, and the journal is then emptied.
///
/// Two files take turns: appends go to the active one while the other is folded, so a fold never holds up an
/// append. An entry is `length (4, little-endian) | sequence (8, little-endian) | AuditEntry | tag (16)`, the
/// tag a keyed BLAKE2b of the three; a torn entry at the end (a write cut short by a crash) fails its tag and is
/// dropped with everything after it when the journal is recovered at start.
public final class AuditJournal: @unchecked Sendable {
    // Safe to share: all state is under `lock`.
    private let lock = NSLock()
    private var files: [JournalFile]
    private var active = 0
    /// Set when a failed write could not be undone: appends are refused until the next fold replaces the file.
    private var broken: CofferError?
    private let store: ConnectionStore
    /// Records waiting to be folded, over both files, past which appends are refused: what cofferd keeps in
    /// memory when the store cannot take them (a full map).
    public let maxPending: Int
    /// Past this many pending records the owner is asked to fold early.
    public let foldThreshold: Int
    /// Called (outside the lock) when the pending records pass `foldThreshold`.
    private let onThreshold: @Sendable () -> Void

    static let fileNames = ["audit-0.journal", "audit-1.journal"]
    private static let checksumLength = KeyRing.tagLength
    private static let headerLength = 12

    /// Opens the journal of the store's directory, first folding into the store whatever a previous cofferd
    /// left in it. Only the process that holds the directory's lock may open it.
    public static func open(
        store: ConnectionStore,
        maxPending: Int = 65_536,
        foldThreshold: Int = 4_096,
        onThreshold: @escaping @Sendable () -> Void = {}
    ) throws(CofferError) -> (AuditJournal, Recovery) {
        let directory = store.configuration.directory
        var files: [JournalFile] = []
        var recovery = Recovery()
        for name in fileNames {
            let file = try JournalFile(path: (directory as NSString).appendingPathComponent(name))
            let (events, dropped) = try file.readAll(keys: store.keys)
            recovery.records += events.count
            recovery.droppedBytes += dropped
            if !events.isEmpty {
                try store.write { writer in try writer.foldAudit(events) }
                store.sequencer.raise(to: events.map(\.sequence).max() ?? 0)
            }
            try file.truncate()
            files.append(file)
        }
        let journal = AuditJournal(
            store: store,
            files: files,
            maxPending: maxPending,
            foldThreshold: foldThreshold,
            onThreshold: onThreshold
        )
        return (journal, recovery)
    }

    /// What is wrong with the journal files in `directory`, read without changing them.
    static func problems(in directory: String, keys: KeyRing) -> [CofferError] {
        var problems: [CofferError] = []
        for name in fileNames {
            let path = (directory as NSString).appendingPathComponent(name)
            guard FileManager.default.fileExists(atPath: path) else { continue }
            do throws(CofferError) {
                _ = try JournalFile(path: path).readAll(keys: keys)
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
        maxPending: Int,
        foldThreshold: Int,
        onThreshold: @escaping @Sendable () -> Void
    ) {
        self.store = store
        self.files = files
        self.maxPending = maxPending
        self.foldThreshold = foldThreshold
        self.onThreshold = onThreshold
    }

    /// Gives each event its sequence number and appends them all with one write; returns them numbered. When
    /// the write fails nothing is kept and no number is used, and the error says why: the caller must then
    /// withhold what the records were for.
    public func append(_ events: [AuditEvent]) throws(CofferError) -> [AuditEvent] {
        guard !events.isEmpty else { return [] }
        lock.lock()
        let numbered: [AuditEvent]
        let pending: Int
        do {
            defer { lock.unlock() }
            if let broken { throw broken }
            let waiting = files.reduce(0) { $0 + $1.pending.count }
            guard waiting + events.count <= maxPending else {
                throw CofferError(
                    .resourceExhausted,
                    "the audit trail cannot take more records: \(waiting) wait to be written to the store, which refuses them (\(store.failure?.message ?? "see cofferd's log"))"
                )
            }
            let file = files[active]
            do {
                numbered = try store.sequencer.take(events.count) { first throws(CofferError) in
                    var numbered = events
                    var bytes: [UInt8] = []
                    let keys = store.keys
                    for index in numbered.indices {
                        numbered[index].sequence = first + UInt64(index)
                        Self.encode(numbered[index], keys: keys, into: &bytes)
                    }
                    try file.append(bytes)
                    return numbered
                }
            } catch {
                // A write that failed and could not be cut back, or a disk that fails: this file takes no more,
                // and cofferd says it is not serving.
                if error.code == .unavailable {
                    broken = error
                    store.markFailed(error)
                }
                throw error
            }
            file.pending += numbered
            pending = waiting + numbered.count
        }
        if pending >= foldThreshold { onThreshold() }
        return numbered
    }

    /// The records of the file appends are not going to, left by a fold that failed; nil when it is empty.
    func leftover() -> (file: Int, records: [AuditEvent])? {
        lock.withLock {
            let sealed = 1 - active
            return files[sealed].pending.isEmpty ? nil : (sealed, files[sealed].pending)
        }
    }

    /// Switches appends to the other file (which must be empty) and returns what the one it leaves holds, for
    /// folding into the store; nil when there is nothing to fold. Call `folded` once the store has committed
    /// them; if the fold fails, they come back as `leftover`.
    func switchFiles() -> (file: Int, records: [AuditEvent])? {
        lock.withLock {
            let leaving = active
            guard files[1 - leaving].pending.isEmpty, !files[leaving].pending.isEmpty || broken != nil else {
                return nil
            }
            active = 1 - leaving
            broken = nil
            return (leaving, files[leaving].pending)
        }
    }

    /// The records of `file` are in the store: empty it.
    func folded(_ file: Int) throws(CofferError) {
        lock.lock()
        defer { lock.unlock() }
        try files[file].truncate()
        files[file].pending = []
    }

    /// Flushes both files to the disk.
    public func sync() throws(CofferError) {
        let files = lock.withLock { self.files }
        for file in files { try file.sync() }
    }

    /// Records appended and not yet folded into the store.
    public var pendingCount: Int { lock.withLock { files.reduce(0) { $0 + $1.pending.count } } }

    /// Closes both files; what they hold stays for the next start to fold.
    public func close() {
        lock.withLock { for file in files { file.close() } }
    }

    static func encode(_ event: AuditEvent, keys: KeyRing, into bytes: inout [UInt8]) {
        // Serialising a message built here cannot fail.
        let body: [UInt8] = (try? AuditLog.entry(event).serializedBytes()) ?? []
        let start = bytes.count
        appendLittleEndian(UInt32(body.count), to: &bytes)
        appendLittleEndian(event.sequence, to: &bytes)
        bytes += body
        bytes += keys.journalTag(bytes[start...])
    }

    /// Parses entries until the end or the first that is torn or fails its tag; returns them and the bytes
    /// left over. A bad entry followed by a good one is not a write cut short: that is an altered journal.
    static func decode(_ bytes: [UInt8], keys: KeyRing) throws(CofferError) -> (events: [AuditEvent], dropped: Int) {
        var events: [AuditEvent] = []
        var offset = 0
        while let (event, next) = entry(at: offset, in: bytes, keys: keys) {
            events.append(event)
            offset = next
        }
        if offset < bytes.count, bytes.count - offset >= headerLength {
            let length = Int(readLittleEndian(UInt32.self, bytes, at: offset))
            let following = offset + headerLength + length + checksumLength
            if length <= 1 << 20, following < bytes.count, entry(at: following, in: bytes, keys: keys) != nil {
                throw CofferError(
                    .dataLoss,
                    "the audit journal holds an altered entry after record \(events.last?.sequence ?? 0)"
                )
            }
        }
        return (events, bytes.count - offset)
    }

    /// The entry at `offset` and where the next begins, if it is whole and its tag verifies.
    private static func entry(at offset: Int, in bytes: [UInt8], keys: KeyRing) -> (AuditEvent, Int)? {
        guard bytes.count - offset >= headerLength + checksumLength else { return nil }
        let length = Int(readLittleEndian(UInt32.self, bytes, at: offset))
        let end = offset + headerLength + length
        guard length <= 1 << 20, end + checksumLength <= bytes.count else { return nil }
        let tag = keys.journalTag(bytes[offset..<end])
        guard ConstantTime.equals(tag, Array(bytes[end..<(end + checksumLength)])) else { return nil }
        let sequence = readLittleEndian(UInt64.self, bytes, at: offset + 4)
        guard
            let entry = try? Coffer_Storage_V1_AuditEntry(serializedBytes: Array(bytes[(offset + headerLength)..<end])),
            let event = try? AuditLog.event(sequence, entry)
        else { return nil }
        return (event, end + checksumLength)
    }
}

private func appendLittleEndian<T: FixedWidthInteger>(_ value: T, to bytes: inout [UInt8]) {
    withUnsafeBytes(of: value.littleEndian) { bytes += $0 }
}

private func readLittleEndian<T: FixedWidthInteger>(_: T.Type, _ bytes: [UInt8], at offset: Int) -> T {
    var value = T.zero
    withUnsafeMutableBytes(of: &value) { $0.copyBytes(from: bytes[offset..<(offset + MemoryLayout<T>.size)]) }
    return T(littleEndian: value)
}

/// One journal file, opened for appending.
final class JournalFile: @unchecked Sendable {
    // Used only under the journal's lock.
    private var fd: Int32
    let path: String
    private(set) var size: Int = 0
    /// What the file holds, not yet folded into the store.
    var pending: [AuditEvent] = []

    init(path: String) throws(CofferError) {
        self.path = path
        fd = Glibc.open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else {
            throw CofferError(.failedPrecondition, "cannot open the audit journal \(path): \(SystemError.current)")
        }
    }

    deinit { close() }

    func close() {
        if fd >= 0 { Glibc.close(fd) }
        fd = -1
    }

    /// Everything the file holds, parsed; and the bytes of a torn end.
    func readAll(keys: KeyRing) throws(CofferError) -> ([AuditEvent], Int) {
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = chunk.withUnsafeMutableBytes { pread(fd, $0.baseAddress!, $0.count, off_t(bytes.count)) }
            if n == 0 { break }
            guard n > 0 else {
                if errno == EINTR { continue }
                throw CofferError(.unavailable, "cannot read the audit journal \(path): \(SystemError.current)")
            }
            bytes += chunk[0..<n]
        }
        return try AuditJournal.decode(bytes, keys: keys)
    }

    /// Appends `bytes` with as few writes as the kernel allows; when one fails, cuts the file back to where
    /// it was, so that no partial entry stays.
    func append(_ bytes: [UInt8]) throws(CofferError) {
        var written = 0
        while written < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + written, bytes.count - written) }
            if n >= 0 {
                written += n
                continue
            }
            let failure = SystemError.current
            if failure.code == EINTR { continue }
            if ftruncate(fd, off_t(size)) != 0 {
                throw CofferError(
                    .unavailable,
                    "the audit trail cannot be written: its journal could not be cut back after a failed write (\(failure))",
                    cause: failure
                )
            }
            throw Self.error(failure, path: path)
        }
        size += bytes.count
    }

    func truncate() throws(CofferError) {
        guard ftruncate(fd, 0) == 0 else {
            throw CofferError(.unavailable, "cannot empty the audit journal \(path): \(SystemError.current)")
        }
        size = 0
    }

    func sync() throws(CofferError) {
        guard fdatasync(fd) == 0 else { throw Self.error(SystemError.current, path: path) }
    }

    static func error(_ failure: SystemError, path: String) -> CofferError {
        switch failure.code {
        case ENOSPC, EDQUOT, EFBIG:
            CofferError(
                .resourceExhausted,
                "the audit trail cannot be written: the disk holding it is full (\(failure))",
                cause: failure
            )
        default:
            CofferError(.unavailable, "the audit trail cannot be written: \(failure)", cause: failure)
        }
    }
}

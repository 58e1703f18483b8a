import CofferCore
import CofferCrypto
import Foundation

/// One file of the audit journal, opened for appending (or, for `cofferd verify`, for reading only). Used only
/// under the journal's lock, but for reading a file that appends no longer go to.
final class JournalFile: @unchecked Sendable {
    private var fd: Int32
    let path: String
    /// Bytes the file holds, and the records among them not yet folded into the store.
    private(set) var size = 0
    private(set) var count = 0
    /// The place in line of its first record, while it holds any.
    private(set) var firstOrder: UInt64?

    init(path: String, readOnly: Bool = false) throws(CofferError) {
        self.path = path
        let flags = readOnly ? O_RDONLY : O_RDWR | O_CREAT | O_APPEND
        fd = Glibc.open(path, flags | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else {
            throw CofferError(.failedPrecondition, "cannot open the audit journal \(path): \(SystemError.current)")
        }
        var info = stat()
        if fstat(fd, &info) == 0 { size = Int(info.st_size) }
    }

    deinit { close() }

    func close() {
        if fd >= 0 { Glibc.close(fd) }
        fd = -1
    }

    private var name: String { (path as NSString).lastPathComponent }

    /// What the file holds, checked and counted without keeping it: the first and last numbers, the highest place
    /// in line, and the bytes of a torn end. Notes the count as what waits to be folded.
    func scan(
        keys: KeyRing,
        numbered: Bool
    ) throws(CofferError) -> (first: UInt64?, last: UInt64?, lastOrder: UInt64?, tornBytes: Int) {
        var first: UInt64?
        var last: UInt64?
        var lastOrder: UInt64?
        var records = 0
        var firstOrder: UInt64?
        let torn = try read(keys: keys, numbered: numbered, chunk: 4096) { chunk, _ in
            first = first ?? chunk.first?.number
            firstOrder = firstOrder ?? chunk.first?.order
            last = chunk.last?.number ?? last
            lastOrder = chunk.map(\.order).max().map { max($0, lastOrder ?? 0) } ?? lastOrder
            records += chunk.count
        }
        count = records
        self.firstOrder = firstOrder
        return (first, last, lastOrder, torn)
    }

    /// Reads the file from its start, handing its records to `body` at most `chunk` at a time, in order, with
    /// whether they are the file's last; returns the bytes of a torn end, which are not records. DATA_LOSS when an entry fails its tag with a whole entry
    /// after it, or (with `numbered`) when numbers do not follow one another: the journal was altered.
    @discardableResult
    func read(
        keys: KeyRing,
        numbered: Bool,
        chunk: Int,
        _ body: ([JournalRecord], _ last: Bool) throws(CofferError) -> Void
    ) throws(CofferError) -> Int {
        // A full chunk is handed on only once another record follows it, so that the last one is known as such.
        var held: [JournalRecord]?
        var buffer: [UInt8] = []
        var offset = 0
        var fileOffset = 0
        var records: [JournalRecord] = []
        var previous: UInt64?
        var piece = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let n = piece.withUnsafeMutableBytes { pread(fd, $0.baseAddress!, $0.count, off_t(fileOffset)) }
            if n < 0 {
                if errno == EINTR { continue }
                throw CofferError(.unavailable, "cannot read the audit journal \(path): \(SystemError.current)")
            }
            if n == 0 { break }
            fileOffset += n
            if offset > 0 {
                buffer.removeFirst(offset)
                offset = 0
            }
            buffer += piece[0..<n]
            while let (record, next) = AuditJournal.entry(at: offset, in: buffer, keys: keys) {
                if numbered, let previous, record.number != previous + 1 {
                    throw CofferError(
                        .dataLoss,
                        record.number > previous
                            ? "the audit journal \(name) lacks records \(previous + 1) to \(record.number - 1): it was altered"
                            : "the audit journal \(name) holds record \(record.number) after record \(previous): it was altered"
                    )
                }
                previous = record.number
                if let full = held {
                    try body(full, false)
                    held = nil
                }
                records.append(record)
                offset = next
                if records.count == chunk {
                    held = records
                    records = []
                }
            }
        }
        if let full = held { try body(full, records.isEmpty) }
        if !records.isEmpty { try body(records, true) }
        if AuditJournal.isAltered(at: offset, in: buffer, keys: keys) {
            throw CofferError(
                .dataLoss,
                "the audit journal \(name) holds an altered entry after record \(previous.map(String.init) ?? "none")"
            )
        }
        return buffer.count - offset
    }

    /// Appends `bytes` (`count` records) with as few writes as the kernel allows; when one fails, cuts the file
    /// back to where it was, so that no partial entry stays.
    func append(_ bytes: [UInt8], firstOrder order: UInt64, count: Int) throws(CofferError) {
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
        self.count += count
        firstOrder = firstOrder ?? order
    }

    /// Puts an empty file in this one's place and appends there from now on. The old file is never cut: a reader
    /// that opened it still reads all of it.
    func reset() throws(CofferError) {
        let fresh = path + ".new"
        unlink(fresh)
        let descriptor = Glibc.open(fresh, O_RDWR | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard descriptor >= 0 else {
            throw CofferError(.unavailable, "cannot empty the audit journal \(path): \(SystemError.current)")
        }
        guard rename(fresh, path) == 0 else {
            let failure = SystemError.current
            Glibc.close(descriptor)
            unlink(fresh)
            throw CofferError(.unavailable, "cannot empty the audit journal \(path): \(failure)")
        }
        close()
        fd = descriptor
        size = 0
        count = 0
        firstOrder = nil
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

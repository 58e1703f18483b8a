import CofferCore
import CofferCrypto
import Foundation

// Backups stay sealed: a backup is a compacted copy of the store's file, made with LMDB's copy API from one
// read transaction (so cofferd may serve meanwhile), holding only what the store holds: values encrypted at
// rest, token hashes, tags. The master key is not in it; restoring needs the key it was made with, and checks
// every record, the summaries and the audit chain before the store is put in place.

/// What a backup or a restore wrote.
public struct BackupReport: Sendable {
    public var path: String
    public var bytes: Int
    public var status: StoreStatus
}

extension DataDirectory {
    /// Writes a backup of the store to `file`, which must not exist: the store is opened (and verified) with
    /// its key and copied compacted into a staging directory beside `file`; the copy is synced and verified on
    /// its own (the report describes the copy, not the store, which a serving cofferd may have changed since),
    /// then linked into place. Records of the last second that a serving cofferd still holds in its audit
    /// journal are not in it.
    public func backup(
        to file: String,
        keyFile: String? = nil,
        configuration: StoreConfiguration? = nil
    ) throws(CofferError) -> BackupReport {
        if FileManager.default.fileExists(atPath: file) {
            throw CofferError(.alreadyExists, "\(file) exists; a backup never replaces a file")
        }
        let store = try open(keyFile: keyFile, configuration: configuration, access: .inspecting)
        defer { store.close() }
        let staging = file + ".partial-\(getpid())"
        guard mkdir(staging, 0o700) == 0 else {
            throw CofferError(.failedPrecondition, "cannot create \(staging): \(SystemError.current)")
        }
        defer { removeStaging(staging) }
        let copy = (staging as NSString).appendingPathComponent(Self.storeFileName)
        let fd = Glibc.open(copy, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else {
            throw CofferError(.failedPrecondition, "cannot create \(copy): \(SystemError.current)")
        }
        do {
            defer { close(fd) }
            do {
                try store.env.copy(to: fd)
            } catch {
                throw CofferError(
                    .failedPrecondition,
                    "cannot write the backup to \(file)",
                    cause: store.failure(error)
                )
            }
            guard fsync(fd) == 0 else {
                throw CofferError(.failedPrecondition, "cannot sync the backup \(file): \(SystemError.current)")
            }
        }
        var copyConfiguration = configuration ?? StoreConfiguration(directory: path)
        copyConfiguration.directory = staging
        let status: StoreStatus
        do throws(CofferError) {
            let copied = try ConnectionStore.open(copyConfiguration, keys: store.keys)
            defer { copied.close() }
            status = try copied.status()
        } catch {
            throw CofferError(error.code, "the copy made for \(file) does not verify: \(error.message)", cause: error)
        }
        // link refuses an existing name: a file made at `file` meanwhile is never replaced.
        guard link(copy, file) == 0 else {
            let err = errno
            if err == EEXIST {
                throw CofferError(.alreadyExists, "\(file) exists; a backup never replaces a file")
            }
            throw CofferError(.failedPrecondition, "cannot put the backup at \(file): \(SystemError(err))")
        }
        FileSystem.syncDirectory(containing: file)
        var info = stat()
        _ = stat(file, &info)
        return BackupReport(path: file, bytes: Int(info.st_size), status: status)
    }

    /// Installs the backup `file` as this directory's store. The directory must hold no store (it is created,
    /// 0700, if missing) and no cofferd may serve it; the key (`keyFile`, or the directory's master.key) must
    /// be the one the backup was made with. The backup is copied into a staging directory inside this one and
    /// verified there in full; only then is it moved into place. DATA_LOSS naming what failed otherwise, and
    /// nothing is installed.
    public func restore(
        from file: String,
        keyFile: String? = nil,
        configuration: StoreConfiguration? = nil
    ) throws(CofferError) -> BackupReport {
        var info = stat()
        guard stat(file, &info) == 0, info.st_mode & S_IFMT == S_IFREG else {
            throw CofferError(.notFound, "no backup file at \(file)")
        }
        try createDirectory()
        let lock = try self.lock()
        defer { withExtendedLifetime(lock) {} }
        if holdsStore || AuditJournal.fileNames.contains(where: { FileManager.default.fileExists(atPath: child($0)) }) {
            throw CofferError(
                .alreadyExists,
                "\(path) holds a store already; restore into an empty directory, or move its files away first"
            )
        }
        let keyPath = keyFile ?? defaultKeyFile
        guard FileManager.default.fileExists(atPath: keyPath) else {
            throw CofferError(
                .failedPrecondition,
                "no master key at \(keyPath): a backup holds no key; put the key it was made with there (mode 0600) or pass --key-file"
            )
        }
        let master = try MasterKey.load(from: keyPath)
        let staging = child(".restoring")
        removeStaging(staging)
        guard mkdir(staging, 0o700) == 0 else {
            throw CofferError(.failedPrecondition, "cannot create \(staging): \(SystemError.current)")
        }
        defer { removeStaging(staging) }
        let staged = (staging as NSString).appendingPathComponent(Self.storeFileName)
        try copyFile(file, to: staged)
        var stagedConfiguration = configuration ?? StoreConfiguration(directory: path)
        stagedConfiguration.directory = staging
        let status: StoreStatus
        do throws(CofferError) {
            let store = try ConnectionStore.open(stagedConfiguration, keys: KeyRing(master: master))
            defer { store.close() }
            status = try store.status()
        } catch {
            throw CofferError(error.code, "the backup \(file) does not verify: \(error.message)", cause: error)
        }
        guard rename(staged, child(Self.storeFileName)) == 0 else {
            throw CofferError(
                .failedPrecondition,
                "cannot move the restored store into \(path): \(SystemError.current)"
            )
        }
        FileSystem.syncDirectory(containing: child(Self.storeFileName))
        try restrictFiles()
        return BackupReport(path: child(Self.storeFileName), bytes: Int(info.st_size), status: status)
    }

    private func child(_ name: String) -> String { (path as NSString).appendingPathComponent(name) }

    private func removeStaging(_ staging: String) {
        for name in (try? FileManager.default.contentsOfDirectory(atPath: staging)) ?? [] {
            unlink((staging as NSString).appendingPathComponent(name))
        }
        rmdir(staging)
    }

    /// Copies `source` to a new file `destination` (0600) and syncs it.
    private func copyFile(_ source: String, to destination: String) throws(CofferError) {
        let input = Glibc.open(source, O_RDONLY | O_CLOEXEC)
        guard input >= 0 else {
            throw CofferError(.failedPrecondition, "cannot read \(source): \(SystemError.current)")
        }
        defer { close(input) }
        let output = Glibc.open(destination, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard output >= 0 else {
            throw CofferError(.failedPrecondition, "cannot create \(destination): \(SystemError.current)")
        }
        defer { close(output) }
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(input, $0.baseAddress, $0.count) }
            if count == 0 { break }
            guard count > 0 else {
                throw CofferError(.failedPrecondition, "cannot read \(source): \(SystemError.current)")
            }
            var written = 0
            while written < count {
                let n = buffer.withUnsafeBytes { write(output, $0.baseAddress! + written, count - written) }
                guard n > 0 else {
                    throw CofferError(.failedPrecondition, "cannot write \(destination): \(SystemError.current)")
                }
                written += n
            }
        }
        guard fsync(output) == 0 else {
            throw CofferError(.failedPrecondition, "cannot sync \(destination): \(SystemError.current)")
        }
    }
}

import CofferCore
import CofferCrypto
import Foundation

/// A Coffer data directory: mode 0700, holding the LMDB files and, unless the key is kept elsewhere, the key
/// file, every file 0600.
public struct DataDirectory: Sendable {
    public let path: String

    /// The key file's name inside the directory when no other path is given.
    public static let keyFileName = "master.key"
    static let storeFileName = "data.mdb"

    public init(_ path: String) {
        self.path = path
    }

    /// Where the key file is when no other path is given.
    public var defaultKeyFile: String { (path as NSString).appendingPathComponent(Self.keyFileName) }

    /// Whether the directory already holds a store.
    public var holdsStore: Bool {
        FileManager.default.fileExists(atPath: (path as NSString).appendingPathComponent(Self.storeFileName))
    }

    /// `cofferd init`: creates the directory (0700), a new key file unless `keyFile` names an existing one, and
    /// an empty store. Refuses a directory that holds a store already and never replaces a key file. Returns
    /// the open store.
    public func initialize(
        keyFile: String? = nil,
        configuration: StoreConfiguration? = nil
    ) throws(CofferError)
        -> ConnectionStore
    {
        try createDirectory()
        if holdsStore {
            throw CofferError(.alreadyExists, "\(path) already holds a Coffer store; cofferd init never replaces one")
        }
        let keyPath = keyFile ?? defaultKeyFile
        let master: MasterKey
        var createdKey = false
        if keyFile != nil, FileManager.default.fileExists(atPath: keyPath) {
            master = try MasterKey.load(from: keyPath)
        } else {
            master = MasterKey.generate()
            try master.write(newFileAt: keyPath)
            createdKey = true
        }
        do throws(CofferError) {
            let store = try ConnectionStore.create(
                configuration ?? StoreConfiguration(directory: path),
                keys: KeyRing(master: master)
            )
            try restrictFiles()
            return store
        } catch {
            if createdKey { unlink(keyPath) }
            throw error
        }
    }

    /// Opens the store in this directory with the key at `keyFile` (the directory's own by default), after
    /// checking the directory's and the key file's permissions.
    /// `access` says what for: cofferd serving it, a tool beside it, or `cofferd verify` (which lists every
    /// problem itself).
    public func open(
        keyFile: String? = nil,
        configuration: StoreConfiguration? = nil,
        access: StoreAccess = .serving
    ) throws(CofferError)
        -> ConnectionStore
    {
        var info = stat()
        guard stat(path, &info) == 0 else {
            let err = errno
            if err == ENOENT {
                throw CofferError(
                    .failedPrecondition,
                    "no data directory at \(path); create it with: cofferd init --data-dir \(path)"
                )
            }
            throw CofferError(
                .failedPrecondition,
                "cannot read data directory \(path): \(SystemError(err).description)"
            )
        }
        guard info.st_mode & S_IFMT == S_IFDIR else {
            throw CofferError(.failedPrecondition, "data directory \(path) is not a directory")
        }
        let mode = info.st_mode & 0o777
        guard mode & 0o077 == 0 else {
            throw CofferError(
                .failedPrecondition,
                "data directory \(path) is open to its group or others (mode \(String(mode, radix: 8))); fix it with: chmod 700 \(path)"
            )
        }
        guard holdsStore else {
            throw CofferError(
                .failedPrecondition,
                "\(path) holds no Coffer store; create one with: cofferd init --data-dir \(path)"
            )
        }
        let master = try MasterKey.load(from: keyFile ?? defaultKeyFile)
        return try ConnectionStore.open(
            configuration ?? StoreConfiguration(directory: path),
            keys: KeyRing(master: master),
            access: access
        )
    }

    /// Creates the directory with mode 0700 (its parents as usual), or tightens an existing one to 0700.
    func createDirectory() throws(CofferError) {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) {
            guard isDirectory.boolValue else {
                throw CofferError(.failedPrecondition, "\(path) exists and is not a directory")
            }
        } else {
            let parent = (path as NSString).deletingLastPathComponent
            do {
                if !parent.isEmpty {
                    try FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: true)
                }
            } catch {
                throw CofferError(.failedPrecondition, "cannot create \(parent)", cause: error)
            }
            if mkdir(path, 0o700) != 0, errno != EEXIST {
                throw CofferError(
                    .failedPrecondition,
                    "cannot create data directory \(path): \(SystemError.current.description)"
                )
            }
        }
        // mkdir's mode is filtered by the umask; set it exactly.
        guard chmod(path, 0o700) == 0 else {
            throw CofferError(
                .failedPrecondition,
                "cannot set mode 0700 on \(path): \(SystemError.current.description)"
            )
        }
    }

    /// Sets 0600 on every regular file in the directory (LMDB's files are created through the umask).
    func restrictFiles() throws(CofferError) {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
        for name in names {
            let file = (path as NSString).appendingPathComponent(name)
            var info = stat()
            guard lstat(file, &info) == 0, info.st_mode & S_IFMT == S_IFREG else { continue }
            guard chmod(file, 0o600) == 0 else {
                throw CofferError(
                    .failedPrecondition,
                    "cannot set mode 0600 on \(file): \(SystemError.current.description)"
                )
            }
        }
        FileSystem.syncDirectory(containing: (path as NSString).appendingPathComponent(Self.storeFileName))
    }
}

/// An exclusive lock on a data directory and on its store's file, held while their descriptors are open, so that
/// a second cofferd on the same store refuses to start instead of taking over the first one's sockets. The store
/// file's lock is on its inode, so a second directory holding hard links to the same `data.mdb` is refused too.
public final class DirectoryLock: Sendable {
    private let descriptors: [Int32]

    init(descriptors: [Int32]) { self.descriptors = descriptors }

    deinit { for fd in descriptors { close(fd) } }
}

extension DataDirectory {
    /// Takes the directory's lock, and its store file's when there is one, without waiting; FAILED_PRECONDITION
    /// when another process holds either. The locks are on the directory and on the store's inode, not on a file
    /// beside them, so removing a file cannot release them, and a hard link cannot dodge them.
    public func lock() throws(CofferError) -> DirectoryLock {
        let directory = try Self.lock(path, flags: O_RDONLY | O_DIRECTORY, what: "data directory \(path)")
        let store = (path as NSString).appendingPathComponent(Self.storeFileName)
        guard FileManager.default.fileExists(atPath: store) else { return DirectoryLock(descriptors: [directory]) }
        do {
            let file = try Self.lock(store, flags: O_RDONLY, what: "the store \(store)")
            return DirectoryLock(descriptors: [directory, file])
        } catch {
            close(directory)
            throw error
        }
    }

    private static func lock(_ path: String, flags: Int32, what: String) throws(CofferError) -> Int32 {
        let fd = Glibc.open(path, flags | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else {
            throw CofferError(.failedPrecondition, "cannot open \(what): \(SystemError.current)")
        }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let err = errno
            close(fd)
            if err == EWOULDBLOCK {
                throw CofferError(
                    .failedPrecondition,
                    "another cofferd is serving \(what) (through this directory or a link to its files); stop it first"
                )
            }
            throw CofferError(.failedPrecondition, "cannot lock \(what): \(SystemError(err))")
        }
        return fd
    }
}

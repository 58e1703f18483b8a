import CCofferShims
import CofferCore
import CofferWire
import Foundation

/// Checks and prepares a Unix socket path before cofferd binds it, and sets its mode and group after.
enum SocketPath {

    /// Refuses abstract and over-long paths, creates the parent directory if missing, and removes a stale
    /// socket left by a cofferd that died. A socket some process is listening on, or a file that is not a
    /// socket, is never removed.
    static func prepare(_ path: String) throws(CofferError) {
        guard !path.isEmpty else {
            throw CofferError(.invalidArgument, "a socket path is empty")
        }
        guard !path.hasPrefix("@"), !path.utf8.contains(0) else {
            throw CofferError(
                .invalidArgument,
                "socket \(path) would be an abstract socket, which any process in the network namespace can reach; give a file-system path"
            )
        }
        guard path.utf8.count <= UnixSocket.maxPathLength else {
            throw CofferError(.invalidArgument, "socket path \(path) is longer than \(UnixSocket.maxPathLength) bytes")
        }
        let parent = (path as NSString).deletingLastPathComponent
        if !parent.isEmpty, !FileManager.default.fileExists(atPath: parent) {
            do {
                try FileManager.default.createDirectory(
                    atPath: parent,
                    withIntermediateDirectories: true,
                    attributes: [.posixPermissions: 0o755]
                )
            } catch {
                throw CofferError(.failedPrecondition, "cannot create \(parent) for socket \(path)", cause: error)
            }
        }
        try checkDirectory(of: path)
        var info = stat()
        guard lstat(path, &info) == 0 else { return }
        guard info.st_mode & S_IFMT == S_IFSOCK else {
            throw CofferError(.failedPrecondition, "\(path) exists and is not a socket; cofferd will not replace it")
        }
        if UnixSocket.accepts(path) {
            throw CofferError(
                .failedPrecondition,
                "another process is listening on \(path); stop it or choose another socket path"
            )
        }
        guard unlink(path) == 0 || errno == ENOENT else {
            throw CofferError(
                .failedPrecondition,
                "cannot remove the stale socket \(path): \(SystemError.current)"
            )
        }
    }

    /// Refuses a socket directory that a process of another uid could change: one where it could remove
    /// cofferd's socket and bind its own. The directory must belong to cofferd's uid or root and be writable by
    /// no one else, unless it is sticky and cofferd's own; every directory above it must belong to cofferd's uid
    /// or root and be sticky where others may write it (as /tmp is).
    static func checkDirectory(of path: String, uid: uid_t = geteuid()) throws(CofferError) {
        let parent = (path as NSString).deletingLastPathComponent
        guard let resolved = realpath(parent.isEmpty ? "." : parent, nil) else {
            throw CofferError(
                .failedPrecondition,
                "cannot resolve \(parent) for socket \(path): \(SystemError.current)"
            )
        }
        var directory = String(cString: resolved)
        free(resolved)
        var first = true
        while true {
            var info = stat()
            guard stat(directory, &info) == 0 else {
                throw CofferError(.failedPrecondition, "cannot read \(directory): \(SystemError.current)")
            }
            let mode = info.st_mode & 0o7777
            let writableByOthers = mode & 0o022 != 0
            let sticky = mode & S_ISVTX != 0
            let why: String?
            if info.st_uid != uid && info.st_uid != 0 {
                why = "belongs to uid \(info.st_uid), neither cofferd's uid \(uid) nor root"
            } else if writableByOthers && first && !(sticky && info.st_uid == uid) {
                why = "can be written by its group or others (mode \(String(mode, radix: 8)))"
            } else if writableByOthers && !sticky {
                why = "can be written by its group or others (mode \(String(mode, radix: 8))) and is not sticky"
            } else {
                why = nil
            }
            if let why {
                throw CofferError(
                    .failedPrecondition,
                    "socket \(path) is in \(directory), which \(why): another process could replace cofferd's socket with its own; use a directory only cofferd's user (or root) can write, such as one it owns with mode 0755"
                )
            }
            if directory == "/" { return }
            directory = (directory as NSString).deletingLastPathComponent
            if directory.isEmpty { directory = "/" }
            first = false
        }
    }

    /// Sets the socket file's mode and, if given, its group, on the socket cofferd bound: the path is opened
    /// without following a symbolic link, and the change is made through that descriptor, so a link put in its
    /// place cannot redirect it.
    static func restrict(_ socket: SocketConfiguration) throws(CofferError) {
        let fd = coffer_open_path_nofollow(socket.path)
        guard fd >= 0 else {
            throw CofferError(.failedPrecondition, "cannot open socket \(socket.path): \(SystemError.current)")
        }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0, info.st_mode & S_IFMT == S_IFSOCK, info.st_uid == geteuid() else {
            throw CofferError(
                .failedPrecondition,
                "\(socket.path) is no longer the socket cofferd bound; another process changed the socket directory"
            )
        }
        if let group = socket.group, coffer_set_group(fd, group) != 0 {
            throw CofferError(
                .failedPrecondition,
                "cannot give socket \(socket.path) group \(group): \(SystemError.current)"
            )
        }
        // chmod through /proc/self/fd changes the very inode the descriptor holds (fchmod refuses O_PATH).
        guard chmod("/proc/self/fd/\(fd)", socket.mode) == 0 else {
            throw CofferError(
                .failedPrecondition,
                "cannot set mode \(String(socket.mode, radix: 8)) on socket \(socket.path): \(SystemError.current)"
            )
        }
    }
}

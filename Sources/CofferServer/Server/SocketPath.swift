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

    /// Sets the socket file's mode and, if given, its group.
    static func restrict(_ socket: SocketConfiguration) throws(CofferError) {
        if let group = socket.group, chown(socket.path, uid_t.max, group) != 0 {
            throw CofferError(
                .failedPrecondition,
                "cannot give socket \(socket.path) group \(group): \(SystemError.current)"
            )
        }
        guard chmod(socket.path, socket.mode) == 0 else {
            throw CofferError(
                .failedPrecondition,
                "cannot set mode \(String(socket.mode, radix: 8)) on socket \(socket.path): \(SystemError.current)"
            )
        }
    }
}

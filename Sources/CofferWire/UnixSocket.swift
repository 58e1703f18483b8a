import CCofferShims
import CofferCore
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Connecting to a Unix stream socket by path: shared by the client library, cofferd's check for a live
/// socket, and the tests.
public enum UnixSocket {
    /// `sun_path` holds 108 bytes with the terminating NUL.
    public static let maxPathLength = 107

    /// A connected descriptor, or the errno of the failure.
    public static func connect(_ path: String) -> Result<Int32, SystemError> {
        guard path.utf8.count <= maxPathLength else { return .failure(SystemError(ENAMETOOLONG)) }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return .failure(SystemError(errno)) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: path.utf8) }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard connected == 0 else {
            let code = errno
            close(fd)
            return .failure(SystemError(code))
        }
        return .success(fd)
    }

    /// The uid of the process at the other end of a connected Unix socket, from the kernel (SO_PEERCRED).
    public static func peerUID(_ fd: Int32) -> Result<uid_t, SystemError> {
        var credentials = coffer_ucred()
        var length = socklen_t(MemoryLayout<coffer_ucred>.size)
        guard getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &length) == 0 else {
            return .failure(SystemError(errno))
        }
        return .success(credentials.uid)
    }

    /// The environment variable that names the uid cofferd runs as, for clients to check.
    public static let serverUIDVariable = "COFFER_SERVER_UID"

    /// The uid set in COFFER_SERVER_UID, nil when it is not set; INVALID_ARGUMENT when it is not a uid.
    public static func configuredServerUID(
        _ environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws(CofferError) -> uid_t? {
        guard let text = environment[serverUIDVariable], !text.isEmpty else { return nil }
        guard let uid = uid_t(text) else {
            throw CofferError(.invalidArgument, "\(serverUIDVariable) must be a numeric uid")
        }
        return uid
    }

    /// Checks, before anything is sent, that the process listening on `path` (connected as `fd`) is cofferd:
    /// its uid, from the kernel, must be `expected` (COFFER_SERVER_UID), or, when none is configured, the owner
    /// of the socket's directory, the only one who can bind a socket there if cofferd's checks of that
    /// directory hold; root is always taken. An impostor bound in a directory others can write fails this, and
    /// never sees a token or a sealed value.
    public static func verifyServer(fd: Int32, path: String, expected: uid_t?) throws(CofferError) {
        let peer: uid_t
        switch peerUID(fd) {
        case .success(let uid): peer = uid
        case .failure(let error):
            throw CofferError(.unavailable, "cannot learn who listens on \(path): \(error)")
        }
        if peer == 0 { return }
        let want: uid_t
        let source: String
        if let expected {
            want = expected
            source = "\(serverUIDVariable)"
        } else {
            let directory = (path as NSString).deletingLastPathComponent
            var info = stat()
            guard stat(directory.isEmpty ? "." : directory, &info) == 0 else {
                throw CofferError(.unavailable, "cannot read \(directory): \(SystemError.current)")
            }
            want = info.st_uid
            source = "the owner of \(directory.isEmpty ? "." : directory)"
        }
        guard peer == want else {
            throw CofferError(
                .failedPrecondition,
                "the process listening on \(path) runs as uid \(peer), not \(want) (\(source)): it is not cofferd, or cofferd runs as another user (then set \(serverUIDVariable)); nothing was sent to it"
            )
        }
    }

    /// Whether something accepts connections on `path`.
    public static func accepts(_ path: String) -> Bool {
        guard case .success(let fd) = connect(path) else { return false }
        close(fd)
        return true
    }
}

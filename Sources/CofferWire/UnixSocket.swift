import CofferCore

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

    /// Whether something accepts connections on `path`.
    public static func accepts(_ path: String) -> Bool {
        guard case .success(let fd) = connect(path) else { return false }
        close(fd)
        return true
    }
}

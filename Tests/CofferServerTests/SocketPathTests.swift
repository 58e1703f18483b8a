import CofferCore
import CofferTestSupport
import CofferWire
import Foundation
import Testing

@testable import CofferServer

@Suite struct SocketPathTests {
    let dir = TemporaryDirectory()

    @Test(arguments: ["", "@coffer", "/tmp/a\u{0}b"])
    func refusesEmptyAndAbstractPaths(path: String) {
        #expect(throws: CofferError.self) { try SocketPath.prepare(path) }
    }

    @Test func refusesAnOverlongPath() {
        let error = try? #require(throws: CofferError.self) {
            try SocketPath.prepare("/tmp/" + String(repeating: "s", count: 120))
        }
        #expect(error?.message.contains("longer than 107 bytes") == true)
    }

    @Test func neverReplacesAFileThatIsNotASocket() throws {
        let path = dir.child("regular")
        #expect(FileManager.default.createFile(atPath: path, contents: Data("keep".utf8)))
        #expect(throws: CofferError.self) { try SocketPath.prepare(path) }
        #expect(FileManager.default.contents(atPath: path) == Data("keep".utf8))
    }

    @Test func removesAStaleSocketAndCreatesTheParent() throws {
        let path = dir.child("stale.sock")
        // A socket file nobody listens on, as a crashed cofferd leaves it.
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: path.utf8) }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        #expect(bound == 0)
        close(fd)
        #expect(FileManager.default.fileExists(atPath: path))
        #expect(!UnixSocket.accepts(path))
        try SocketPath.prepare(path)
        #expect(!FileManager.default.fileExists(atPath: path))

        let nested = dir.child("run/coffer/admin.sock")
        try SocketPath.prepare(nested)
        var isDirectory: ObjCBool = false
        #expect(FileManager.default.fileExists(atPath: dir.child("run/coffer"), isDirectory: &isDirectory))
        #expect(isDirectory.boolValue)
    }

    @Test func refusesASocketDirectoryAnotherUIDCouldChange() throws {
        let shared = dir.child("shared")
        try FileManager.default.createDirectory(atPath: shared, withIntermediateDirectories: false)
        chmod(shared, 0o777)
        let open = try? #require(throws: CofferError.self) { try SocketPath.prepare(shared + "/worker.sock") }
        #expect(open?.message.contains("can be written by its group or others") == true)
        chmod(shared, 0o770)
        #expect(throws: CofferError.self) { try SocketPath.prepare(shared + "/worker.sock") }
        // Sticky and cofferd's own: others may add entries but not remove or rename cofferd's socket.
        chmod(shared, 0o1777)
        try SocketPath.checkDirectory(of: shared + "/worker.sock")
        #expect(throws: CofferError.self) { try SocketPath.checkDirectory(of: shared + "/worker.sock", uid: 4242) }
        chmod(shared, 0o755)
        try SocketPath.prepare(shared + "/worker.sock")
        // Owned by neither cofferd's uid nor root: refused whatever its mode.
        if getuid() == 0 {
            chown(shared, 4243, 4243)
            #expect(throws: CofferError.self) { try SocketPath.checkDirectory(of: shared + "/x.sock", uid: 4242) }
            chown(shared, 0, 0)
        }
        // A directory below one that others can write, and that is not sticky.
        let nested = shared + "/inner"
        try FileManager.default.createDirectory(atPath: nested, withIntermediateDirectories: false)
        chmod(nested, 0o755)
        chmod(shared, 0o777)
        let above = try? #require(throws: CofferError.self) { try SocketPath.checkDirectory(of: nested + "/w.sock") }
        #expect(above?.message.contains("not sticky") == true)
    }
}

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
}

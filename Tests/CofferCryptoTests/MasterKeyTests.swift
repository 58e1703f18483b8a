import CofferCore
import CofferTestSupport
import Foundation
import Testing

@testable import CofferCrypto

@Suite struct MasterKeyTests {
    let dir = TemporaryDirectory()

    @Test func writesOnlyANewFileWithMode0600() throws {
        let path = dir.child("master.key")
        let key = MasterKey.generate()
        try key.write(newFileAt: path)
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        #expect((attributes[.posixPermissions] as? Int) == 0o600)
        #expect((attributes[.size] as? Int) == 32)

        let error = try #require(throws: CofferError.self) { try MasterKey.generate().write(newFileAt: path) }
        #expect(error.code == .alreadyExists)
        // The original key is untouched.
        let reloaded = try MasterKey.load(from: path)
        #expect(KeyRing(master: reloaded).keyID == KeyRing(master: key).keyID)
    }

    @Test func loadsRawAndBase64Forms() throws {
        let raw = Array(0..<32).map(UInt8.init)
        let rawPath = dir.child("raw.key")
        try write(raw, to: rawPath)
        let base64Path = dir.child("b64.key")
        try write(Array((Data(raw).base64EncodedString() + "\n").utf8), to: base64Path)
        let a = KeyRing(master: try MasterKey.load(from: rawPath))
        let b = KeyRing(master: try MasterKey.load(from: base64Path))
        #expect(a.keyID == b.keyID)
        #expect(a.publicKey == b.publicKey)
    }

    @Test(arguments: [0o644, 0o640, 0o604, 0o660, 0o602])
    func refusesAFileOthersCanReach(mode: Int) throws {
        let path = dir.child("open-\(mode).key")
        try write(SecureRandom.bytes(32), to: path, mode: mode)
        let error = try #require(throws: CofferError.self) { try MasterKey.load(from: path) }
        #expect(error.code == .failedPrecondition)
        #expect(error.message.contains("chmod 600 \(path)"))
    }

    @Test(arguments: [0, 16, 31, 33, 100, 4096])
    func refusesWrongSizes(size: Int) throws {
        let path = dir.child("size-\(size).key")
        try write([UInt8](repeating: 0x41, count: size), to: path)
        let error = try #require(throws: CofferError.self) { try MasterKey.load(from: path) }
        #expect(error.code == .failedPrecondition)
        #expect(error.message.contains("does not hold a key"))
    }

    @Test func refusesAMissingFileWithAHint() throws {
        let error = try #require(throws: CofferError.self) { try MasterKey.load(from: dir.child("none.key")) }
        #expect(error.message.contains("cofferd init"))
    }

    @Test func refusesADirectory() throws {
        let path = dir.child("subdir")
        try FileManager.default.createDirectory(
            atPath: path,
            withIntermediateDirectories: false,
            attributes: [.posixPermissions: 0o700]
        )
        #expect(throws: CofferError.self) { try MasterKey.load(from: path) }
    }

    @Test func neverPrintsTheKey() throws {
        let key = MasterKey.generate()
        let bytes = key.bytes.copyBytes()
        var dumped = ""
        dump(key, to: &dumped)
        for text in ["\(key)", String(reflecting: key), dumped] {
            #expect(!text.contains(Hex.encode(bytes)))
            #expect(!text.contains(Data(bytes).base64EncodedString()))
        }
    }

    private func write(_ bytes: [UInt8], to path: String, mode: Int = 0o600) throws {
        #expect(FileManager.default.createFile(atPath: path, contents: Data(bytes)))
        try FileManager.default.setAttributes([.posixPermissions: mode], ofItemAtPath: path)
    }
}

import CofferCore
import CofferCrypto
import CofferStore
import CofferTestSupport
import Foundation
import Testing

@Suite struct DataDirectoryTests {
    let dir = TemporaryDirectory()

    func mode(_ path: String) throws -> Int {
        try #require(FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int)
    }

    @Test func initializeSetsModesAndRefusesASecondTime() throws {
        let data = DataDirectory(dir.child("nested/data"))
        try data.initialize().close()
        #expect(try mode(data.path) == 0o700)
        let files = try FileManager.default.contentsOfDirectory(atPath: data.path)
        #expect(Set(files) == ["master.key", "data.mdb", "lock.mdb"])
        for file in files { #expect(try mode(data.path + "/" + file) == 0o600) }

        let keyBefore = FileManager.default.contents(atPath: data.defaultKeyFile)
        let error = cofferError { _ = try data.initialize() }
        #expect(error?.code == .alreadyExists)
        #expect(FileManager.default.contents(atPath: data.defaultKeyFile) == keyBefore)
    }

    @Test func initializeNeverReplacesAKeyFile() throws {
        let data = DataDirectory(dir.child("data"))
        try FileManager.default.createDirectory(atPath: data.path, withIntermediateDirectories: true)
        #expect(
            FileManager.default.createFile(
                atPath: data.defaultKeyFile,
                contents: Data([1, 2, 3]),
                attributes: [.posixPermissions: 0o600]
            )
        )
        #expect(cofferError { _ = try data.initialize() }?.code == .alreadyExists)
        #expect(FileManager.default.contents(atPath: data.defaultKeyFile) == Data([1, 2, 3]))
        #expect(!data.holdsStore)
    }

    @Test func initializeUsesAnExternalKeyFile() throws {
        let keyFile = dir.child("credential")
        let master = MasterKey.generate()
        try master.write(newFileAt: keyFile)
        let data = DataDirectory(dir.child("data"))
        let store = try data.initialize(keyFile: keyFile)
        #expect(store.keys.keyID == KeyRing(master: master).keyID)
        store.close()
        #expect(!FileManager.default.fileExists(atPath: data.defaultKeyFile))
        try data.open(keyFile: keyFile).close()
        // Without the key file it cannot open.
        #expect(cofferError { _ = try data.open() }?.code == .failedPrecondition)
    }

    @Test func openRefusesALooseDirectoryOrKey() throws {
        let data = DataDirectory(dir.child("data"))
        try data.initialize().close()
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: data.path)
        let loose = cofferError { _ = try data.open() }
        #expect(loose?.message.contains("chmod 700") == true)
        try FileManager.default.setAttributes([.posixPermissions: 0o700], ofItemAtPath: data.path)
        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: data.defaultKeyFile)
        let readable = cofferError { _ = try data.open() }
        #expect(readable?.code == .failedPrecondition)
        #expect(readable?.message.contains("chmod 600") == true)
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: data.defaultKeyFile)
        try data.open().close()
    }

    @Test func openExplainsAMissingStore() throws {
        let missing = cofferError { _ = try DataDirectory(dir.child("none")).open() }
        #expect(missing?.message.contains("cofferd init") == true)
        let empty = DataDirectory(dir.child("empty"))
        try FileManager.default.createDirectory(
            atPath: empty.path,
            withIntermediateDirectories: false,
            attributes: [.posixPermissions: 0o700]
        )
        #expect(cofferError { _ = try empty.open() }?.message.contains("holds no Coffer store") == true)
    }
}

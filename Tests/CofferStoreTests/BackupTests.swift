import CofferCore
import CofferCrypto
import CofferTestSupport
import Foundation
import Testing

@testable import CofferStore

/// Backups: a compacted copy that stays sealed, and a restore that installs one only after verifying it.
@Suite struct BackupTests {
    func populated() throws -> StoreFixture {
        let f = try StoreFixture()
        for n in 0..<20 {
            try f.put("aws/c\(n)", ["key": "key-\(n)", "secret": "secret-\(n)"])
            try f.grant("w", "aws/c\(n)")
        }
        try f.put("aws/target", ["key": "target"])
        try f.store.delete(try ConnectionRef(parsing: "aws/c19"))
        f.store.close()
        return f
    }

    /// A directory holding only a copy of `f`'s key, as an operator restoring would prepare it.
    func emptyDirectoryWithKey(_ f: StoreFixture, _ name: String = "restored") throws -> DataDirectory {
        let target = DataDirectory(f.dir.child(name))
        try FileManager.default.createDirectory(atPath: target.path, withIntermediateDirectories: false)
        chmod(target.path, 0o700)
        try FileManager.default.copyItem(atPath: f.dataDirectory.defaultKeyFile, toPath: target.defaultKeyFile)
        chmod(target.defaultKeyFile, 0o600)
        return target
    }

    @Test func aRestoredBackupServesTheSameValuesAndVerifies() throws {
        let f = try populated()
        let file = f.dir.child("store.backup")
        let report = try f.dataDirectory.backup(to: file)
        #expect(report.status.connections == 20 && report.bytes > 0)
        #expect(try FileManager.default.attributesOfItem(atPath: file)[.posixPermissions] as? Int == 0o600)
        // Sealed: no value is in the backup.
        let bytes = try Array(Data(contentsOf: URL(fileURLWithPath: file)))
        #expect(!bytes.contains(bytes: Array("secret-3".utf8)))

        let target = try emptyDirectoryWithKey(f)
        let restored = try target.restore(from: file)
        #expect(restored.status.connections == 20 && restored.status.grants == 19)
        let store = try target.open()
        defer { store.close() }
        #expect(try store.verificationProblems().isEmpty)
        for n in 0..<19 {
            let values = try store.get(try ConnectionRef(parsing: "aws/c\(n)"), for: try WorkflowName("w"))
            #expect(values.fields[try FieldName("secret")]?.testText == "secret-\(n)")
        }
        #expect(cofferError { _ = try store.info(try ConnectionRef(parsing: "aws/c19")) }?.code == .notFound)
        #expect(!FileManager.default.fileExists(atPath: target.path + "/.restoring"))
    }

    @Test func aBackupNeverReplacesAFile() throws {
        let f = try populated()
        let file = f.dir.child("taken")
        FileManager.default.createFile(atPath: file, contents: Data("mine".utf8))
        #expect(cofferError { _ = try f.dataDirectory.backup(to: file) }?.code == .alreadyExists)
        #expect(try String(contentsOfFile: file, encoding: .utf8) == "mine")
    }

    @Test func aRestoreRefusesAStoreInPlaceAMissingOrWrongKeyAndAnAlteredBackup() throws {
        let f = try populated()
        let file = f.dir.child("store.backup")
        try f.dataDirectory.backup(to: file)

        // Over the store itself.
        #expect(cofferError { _ = try f.dataDirectory.restore(from: file) }?.code == .alreadyExists)

        // Without the key.
        let keyless = DataDirectory(f.dir.child("keyless"))
        let missing = cofferError { _ = try keyless.restore(from: file) }
        #expect(missing?.code == .failedPrecondition && missing?.message.contains("holds no key") == true)
        #expect(!keyless.holdsStore)

        // With another key.
        let other = DataDirectory(f.dir.child("other"))
        try other.initialize().close()
        let otherKeyDirectory = DataDirectory(f.dir.child("other-key"))
        try FileManager.default.createDirectory(atPath: otherKeyDirectory.path, withIntermediateDirectories: false)
        chmod(otherKeyDirectory.path, 0o700)
        let wrong = cofferError { _ = try otherKeyDirectory.restore(from: file, keyFile: other.defaultKeyFile) }
        #expect(wrong?.code == .failedPrecondition && wrong?.message.contains("master key does not match") == true)
        #expect(!otherKeyDirectory.holdsStore)

        // Altered: a record moved to another connection's name.
        var bytes = try Array(Data(contentsOf: URL(fileURLWithPath: file)))
        let name = Array("aws/target".utf8)
        let at = try #require(bytes.firstRange(of: name))
        bytes[at.lowerBound + 7] ^= 0x01
        let altered = f.dir.child("altered.backup")
        try Data(bytes).write(to: URL(fileURLWithPath: altered))
        let target = try emptyDirectoryWithKey(f)
        let refused = cofferError { _ = try target.restore(from: altered) }
        #expect(refused?.code == .dataLoss, "\(refused?.message ?? "restored")")
        #expect(refused?.message.contains("does not verify") == true)
        #expect(!target.holdsStore)
        #expect(!FileManager.default.fileExists(atPath: target.path + "/.restoring"))
    }
}

import CofferTestSupport
import Foundation
import Testing

/// Runs the real cofferd binary, as an operator would.
@Suite struct InitCommandTests {
    let dir = TemporaryDirectory()

    func mode(_ path: String) throws -> Int {
        try #require(FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int)
    }

    @Test func initTwiceRefusesTheSecondAndLeavesModes() throws {
        let data = dir.child("data")
        let first = try BuiltProducts.run("cofferd", ["init", "--data-dir", data])
        #expect(first.status == 0, "\(first.stderr)")
        #expect(first.stdout.contains("key id: "))
        #expect(first.stdout.contains("public key: "))
        let key = try #require(FileManager.default.contents(atPath: data + "/master.key"))

        let second = try BuiltProducts.run("cofferd", ["init", "--data-dir", data])
        #expect(second.status != 0)
        #expect(second.stderr.hasPrefix("cofferd: error: "))
        #expect(second.stderr.contains("already holds a Coffer store"))
        #expect(FileManager.default.contents(atPath: data + "/master.key") == key)

        #expect(try mode(data) == 0o700)
        let files = try FileManager.default.contentsOfDirectory(atPath: data)
        #expect(!files.isEmpty)
        for file in files { #expect(try mode(data + "/" + file) == 0o600, "\(file)") }

        // The key itself is never printed.
        let hex = key.map { String(format: "%02x", $0) }.joined()
        for output in [first.stdout, first.stderr, second.stdout, second.stderr] {
            #expect(!output.contains(hex))
            #expect(!output.contains(key.base64EncodedString()))
        }
    }

    @Test func statusOpensTheStoreAndChecksTheKey() throws {
        let data = dir.child("data")
        #expect(try BuiltProducts.run("cofferd", ["init", "--data-dir", data]).status == 0)
        let status = try BuiltProducts.run("cofferd", ["status", "--data-dir", data])
        #expect(status.status == 0, "\(status.stderr)")
        #expect(status.stdout.contains("connections: 0"))

        // Another key, given explicitly, is refused.
        let other = dir.child("other")
        #expect(try BuiltProducts.run("cofferd", ["init", "--data-dir", other]).status == 0)
        let wrong = try BuiltProducts.run(
            "cofferd",
            ["status", "--data-dir", data, "--key-file", other + "/master.key"]
        )
        #expect(wrong.status != 0)
        #expect(wrong.stderr.contains("master key does not match"))
    }

    @Test func aKeyFileOthersCanReadIsRefusedWithTheFix() throws {
        let data = dir.child("data")
        #expect(try BuiltProducts.run("cofferd", ["init", "--data-dir", data]).status == 0)
        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: data + "/master.key")
        let result = try BuiltProducts.run("cofferd", ["status", "--data-dir", data])
        #expect(result.status != 0)
        #expect(result.stderr.contains("chmod 600 \(data)/master.key"))
    }

    @Test func statusWithoutInitSaysWhatToDo() throws {
        let result = try BuiltProducts.run("cofferd", ["status", "--data-dir", dir.child("absent")])
        #expect(result.status != 0)
        #expect(result.stderr.contains("cofferd init --data-dir"))
    }
}

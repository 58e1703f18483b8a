import CofferCore
import CofferTestSupport
import Foundation
import Testing

/// The real cofferd on a store made before connection types (the fixture of CofferStoreTests): untyped
/// connections are got, described and overwritten as before, whatever their names' types now require.
@Suite struct UntypedStoreCLITests {
    @Test func aStoreFromBeforeTypesKeepsServingItsUntypedConnections() throws {
        let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../CofferStoreTests/Fixtures/format-2-untyped").standardized
        let dir = TemporaryDirectory(prefix: "untyped")
        let data = try dir.copyStoreFixture(fixture)
        let daemon = try CofferdProcess(dir: dir, dataDirectory: data)
        let issued = try daemon.coffer(["token", "issue", "deploy", "--json"])
        let token = try #require(
            (try JSONSerialization.jsonObject(with: Data(issued.stdout.utf8)) as? [String: Any])?["token"] as? String
        )

        let got = try daemon.coffer(["get", "aws/prod"], token: token)
        #expect(got.status == 0, "\(got.stderr)")
        let typed = try #require(try JSONSerialization.jsonObject(with: Data(got.stdout.utf8)) as? [String: Any])
        #expect(typed["type"] as? String == "generic")
        #expect(
            typed["fields"] as? [String: String] == [
                "access_key_id": "AKIAUNTYPED", "secret_access_key": "untyped-secret-1",
            ]
        )
        #expect(typed["secret"] as? [String] == ["access_key_id", "secret_access_key"])
        let vault = try daemon.coffer(["get", "vault/main", "--field", "k"], token: token)
        #expect(vault.status == 0 && vault.stdout == "v", "\(vault.stderr)")

        let described = try daemon.coffer(["describe", "http/api"])
        #expect(described.status == 0 && described.stdout.contains("generic (stored before types)"))
        #expect(!described.stdout.contains("untyped-token"))

        // An overwrite and an update keep it untyped: free-form fields, all secret.
        let overwrite = try daemon.coffer(
            ["overwrite", "aws/prod"],
            stdin: #"{"secret_access_key": "untyped-secret-2"}"#
        )
        #expect(overwrite.status == 0, "\(overwrite.stderr)")
        let update = try daemon.coffer(["update", "aws/prod", "--secret", "note"], stdin: #"{"note": "n"}"#)
        #expect(update.status == 0, "\(update.stderr)")
        let regot = try daemon.coffer(["get", "aws/prod"], token: token)
        let after = try #require(try JSONSerialization.jsonObject(with: Data(regot.stdout.utf8)) as? [String: Any])
        #expect(after["fields"] as? [String: String] == ["note": "n", "secret_access_key": "untyped-secret-2"])
        #expect(after["version"] as? Int == 3 && after["type"] as? String == "generic")
        // A new connection under the same type is typed.
        let typedPut = try daemon.coffer(["put", "aws/new"], stdin: #"{"secret_access_key": "x"}"#)
        #expect(typedPut.status == 2 && typedPut.stderr.contains("not a field of aws"))
        #expect(daemon.stop() == 0)
        let verify = try BuiltProducts.run("cofferd", ["verify", "--data-dir", data])
        #expect(verify.status == 0, "\(verify.stderr)")
    }
}

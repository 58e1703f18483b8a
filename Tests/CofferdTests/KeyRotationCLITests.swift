import CofferClient
import CofferCore
import CofferCrypto
import CofferTestSupport
import Foundation
import Testing

/// Key rotation with the real cofferd and the real CLI: rotate, kill -9 during the re-encryption, restart,
/// follow it to its end, retire the old generation once nothing depends on it, and verify the store offline.
@Suite struct KeyRotationCLITests {
    func json(_ text: String) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
    }

    @Test func rotateKillResumeRetireAndVerify() throws {
        let dir = TemporaryDirectory(prefix: "rotation")
        var daemon = try CofferdProcess(dir: dir, arguments: ["--sealed-key-grace", "0"])
        let canary = Canary("rotated")
        var everything = ""
        let admin = try CofferAdminClient(socketPath: daemon.adminSocket)
        let count = 600
        for n in 0..<count {
            try admin.put(
                try ConnectionRef(parsing: "generic/aws-c\(n)"),
                values: [try FieldName("secret"): SecretBytes(utf8: "\(canary.text)-\(n)")]
            )
        }
        #expect(try daemon.coffer(["grant", "deploy", "generic/aws-c7"]).status == 0)
        let issued = try json(try daemon.coffer(["token", "issue", "deploy", "--ttl", "1h", "--json"]).stdout)
        let token = try #require(issued["token"] as? String)
        let tokenID = try #require(issued["id"] as? String)
        let before = try admin.publicKey().id

        let rotated = try daemon.coffer(["key", "rotate"])
        #expect(rotated.status == 0, "\(rotated.stderr)")
        #expect(rotated.stdout.contains("key generation 2 is active"))
        #expect(try admin.publicKey().id != before)
        // Killed while (or just after) it re-encrypts: the cursor is in the last batch's commit.
        kill(daemon.process.processIdentifier, SIGKILL)
        daemon.process.waitUntilExit()
        everything += daemon.output

        daemon = try CofferdProcess(dir: dir, name: "again", dataDirectory: daemon.dataDirectory)
        var status: [String: Any] = [:]
        let deadline = Date().addingTimeInterval(60)
        repeat {
            let shown = try daemon.coffer(["key", "status", "--json"])
            #expect(shown.status == 0, "\(shown.stderr)")
            status = try json(shown.stdout)
            let got = try daemon.coffer(["get", "generic/aws-c7", "--field", "secret"], token: token)
            #expect(got.status == 0 && got.stdout == "\(canary.text)-7", "\(got.stderr)")
            if (status["reencryption"] as? [String: Any])?["done"] as? Bool == true { break }
            usleep(50_000)
        } while Date() < deadline
        let generations = try #require(status["generations"] as? [[String: Any]])
        #expect(generations.map { $0["state"] as? String } == ["decrypt-only", "active"])
        #expect(generations[0]["fields"] as? Int == 0 && generations[0]["records"] as? Int == 0)
        #expect(generations[1]["fields"] as? Int == count)
        #expect(generations[0]["live_tokens"] as? Int == 1)
        everything += try daemon.coffer(["key", "status"]).stdout

        let refused = try daemon.coffer(["key", "retire", "1"])
        #expect(refused.status == 7 && refused.stderr.contains("live tokens"), "\(refused.stderr)")
        #expect(try daemon.coffer(["token", "revoke", tokenID]).status == 0)
        let retired = try daemon.coffer(["key", "retire", "1"])
        #expect(retired.status == 0, "\(retired.stderr)")
        // A token issued now is hashed under generation 2, and values still come out.
        let freshToken = try daemon.coffer(["token", "issue", "deploy"]).stdout.trimmingCharacters(
            in: .whitespacesAndNewlines
        )
        let got = try daemon.coffer(["get", "generic/aws-c7", "--field", "secret"], token: freshToken)
        #expect(got.stdout == "\(canary.text)-7")
        #expect(daemon.stop() == 0)
        everything += daemon.output + retired.stdout + refused.stderr

        let verified = try BuiltProducts.run("cofferd", ["verify", "--data-dir", daemon.dataDirectory])
        #expect(verified.status == 0, "\(verified.stderr)")
        let offline = try BuiltProducts.run("cofferd", ["status", "--data-dir", daemon.dataDirectory])
        #expect(
            offline.status == 0 && offline.stdout.contains("retired") && offline.stdout.contains("re-encryption: done")
        )
        everything += verified.stdout + verified.stderr + offline.stdout + offline.stderr
        #expect(!canary.occurs(in: everything))
        #expect(!everything.contains(token) && !everything.contains(freshToken))
    }
}

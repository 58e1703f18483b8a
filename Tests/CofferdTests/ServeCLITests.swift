import CofferTestSupport
import Foundation
import Testing

/// The real cofferd, driven through the real coffer CLI as an admin and a worker would.
@Suite struct ServeCLITests {
    func json(_ text: String) throws -> Any {
        try JSONSerialization.jsonObject(with: Data(text.utf8))
    }

    @Test func putListGrantTokenGetOverwriteDelete() throws {
        let daemon = try CofferdProcess()
        let key = Canary("key")
        let secret = Canary("secret")
        let newSecret = Canary("new")
        var everything = ""  // every byte the CLI printed, scanned for canaries at the end
        func coffer(_ args: [String], stdin: String = "", token: String? = nil) throws -> ProcessResult {
            let result = try daemon.coffer(args, stdin: stdin, token: token)
            return result
        }

        let put = try coffer(
            ["put", "generic/aws-prod"],
            stdin: #"{"access_key_id": "\#(key.text)", "secret_access_key": "\#(secret.text)"}"#
        )
        #expect(put.status == 0, "\(put.stderr)")
        everything += put.stdout + put.stderr

        let list = try coffer(["list", "--json"])
        #expect(list.status == 0)
        let listed = try #require(try json(list.stdout) as? [[String: Any]])
        #expect(listed.count == 1)
        #expect(listed[0]["connection"] as? String == "generic/aws-prod")
        #expect(listed[0]["fields"] as? [String] == ["access_key_id", "secret_access_key"])
        #expect(listed[0]["version"] as? Int == 1)
        everything += list.stdout + (try coffer(["list"]).stdout)

        #expect(try coffer(["grant", "deploy", "generic/aws-prod"]).status == 0)
        let issued = try coffer(["token", "issue", "deploy", "--ttl", "10m", "--run-id", "run-7", "--json"])
        #expect(issued.status == 0, "\(issued.stderr)")
        let tokenObject = try #require(try json(issued.stdout) as? [String: Any])
        let token = try #require(tokenObject["token"] as? String)
        let tokenID = try #require(tokenObject["id"] as? String)
        #expect(tokenObject["expires"] is String)

        let got = try coffer(["get", "generic/aws-prod"], token: token)
        #expect(got.status == 0, "\(got.stderr)")
        let typed = try #require(try json(got.stdout) as? [String: Any])
        #expect(typed["type"] as? String == "generic" && typed["variant"] as? String == "default")
        #expect(typed["fields"] as? [String: String] == ["access_key_id": key.text, "secret_access_key": secret.text])
        #expect(typed["secret"] as? [String] == ["access_key_id", "secret_access_key"])
        let one = try coffer(["get", "generic/aws-prod", "--field", "secret_access_key"], token: token)
        #expect(one.stdout == secret.text)

        let overwrite = try coffer(
            ["overwrite", "generic/aws-prod", "--expect-version", "1"],
            stdin: #"{"secret_access_key": "\#(newSecret.text)"}"#
        )
        #expect(overwrite.status == 0, "\(overwrite.stderr)")
        #expect(overwrite.stdout.contains("version 2"))
        everything += overwrite.stdout + overwrite.stderr
        let stale = try coffer(["overwrite", "generic/aws-prod", "--expect-version", "1"], stdin: #"{"a": "b"}"#)
        #expect(stale.status == 7)
        #expect(stale.stderr.hasPrefix("coffer: error: "))
        let regot = try #require(
            try json(try coffer(["get", "generic/aws-prod"], token: token).stdout) as? [String: Any]
        )
        #expect(regot["fields"] as? [String: String] == ["secret_access_key": newSecret.text])

        #expect(try coffer(["delete", "generic/aws-prod"]).status == 0)
        let gone = try coffer(["get", "generic/aws-prod"], token: token)
        #expect(gone.status == 3)
        #expect(gone.stderr.contains("deleted"))

        let audit = try coffer(["audit", "--json"])
        #expect(audit.status == 0)
        let records = try #require(try json(audit.stdout) as? [[String: Any]])
        let operations = Set(records.compactMap { $0["operation"] as? String })
        #expect(operations.isSuperset(of: ["Put", "List", "Grant", "IssueToken", "Get", "Overwrite", "Delete"]))
        let gets = records.filter { $0["operation"] as? String == "Get" }
        #expect(gets.allSatisfy { $0["workflow"] as? String == "deploy" && $0["token_id"] as? String == tokenID })
        #expect(gets.contains { $0["run_id"] as? String == "run-7" })
        #expect(gets.contains { $0["outcome"] as? String == "NOT_FOUND" })
        #expect(records.allSatisfy { ($0["peer_pid"] as? Int ?? 0) > 0 })
        // One client at a time: sequence order is request order.
        let sequenced = records.compactMap { $0["operation"] as? String }
        let firstGet = try #require(sequenced.firstIndex(of: "Get"))
        let overwriteAt = try #require(sequenced.firstIndex(of: "Overwrite"))
        #expect(firstGet < overwriteAt)
        #expect(sequenced.lastIndex(of: "Delete")! < sequenced.lastIndex(of: "Get")!)
        everything += audit.stdout + (try coffer(["audit"]).stdout)

        #expect(daemon.stop() == 0)
        everything += daemon.output
        for canary in [key, secret, newSecret] {
            #expect(
                !canary.occurs(in: everything),
                "a value leaked into cofferd's output, the audit trail or the CLI's messages"
            )
        }
        #expect(!everything.contains(token))
        // And the store on disk holds neither values nor the token.
        let disk = allFileBytes(under: daemon.dataDirectory).flatMap(\.1)
        for canary in [key, secret, newSecret] { #expect(!canary.occurs(in: disk)) }
        #expect(!disk.contains(bytes: Array(token.utf8)))
    }

    @Test func tokensAreCheckedAndWorkflowsConfined() throws {
        let daemon = try CofferdProcess()
        #expect(try daemon.coffer(["put", "generic/http-api"], stdin: #"{"token": "t"}"#).status == 0)
        #expect(try daemon.coffer(["put", "generic/http-other"], stdin: #"{"token": "o"}"#).status == 0)
        #expect(try daemon.coffer(["grant", "deploy", "generic/http-api"]).status == 0)
        let deploy = try daemon.coffer(["token", "issue", "deploy"]).stdout.trimmingCharacters(
            in: .whitespacesAndNewlines
        )
        let intruder = try daemon.coffer(["token", "issue", "intruder"]).stdout.trimmingCharacters(
            in: .whitespacesAndNewlines
        )
        #expect(deploy.hasPrefix("cft_"))

        // An ungranted workflow: denied whether or not the connection exists.
        let ungranted = try daemon.coffer(["get", "generic/http-api"], token: intruder)
        let missing = try daemon.coffer(["get", "generic/http-nothing"], token: intruder)
        #expect(ungranted.status == 5)
        #expect(missing.status == 5)
        // Granted one connection, not the other.
        #expect(try daemon.coffer(["get", "generic/http-other"], token: deploy).status == 5)
        #expect(try daemon.coffer(["get", "generic/http-api"], token: deploy).status == 0)

        // Forged, missing and revoked tokens.
        #expect(try daemon.coffer(["get", "generic/http-api"], token: deploy + "x").status == 6)
        #expect(try daemon.coffer(["get", "generic/http-api"], token: "cft_0123456789abcdef_nothing").status == 6)
        let none = try daemon.coffer(["get", "generic/http-api"], token: "")
        #expect(none.status == 6)
        #expect(none.stderr.contains("COFFER_TOKEN"))
        let tokenFile = daemon.dir.child("token")
        try deploy.write(toFile: tokenFile, atomically: false, encoding: .utf8)
        #expect(try daemon.coffer(["get", "generic/http-api", "--token-file", tokenFile]).status == 0)

        let issued = try daemon.coffer(["token", "issue", "deploy", "--json"])
        let object = try #require(try JSONSerialization.jsonObject(with: Data(issued.stdout.utf8)) as? [String: Any])
        let token = try #require(object["token"] as? String)
        let id = try #require(object["id"] as? String)
        #expect(try daemon.coffer(["get", "generic/http-api"], token: token).status == 0)
        #expect(try daemon.coffer(["token", "revoke", id]).status == 0)
        let revoked = try daemon.coffer(["get", "generic/http-api"], token: token)
        #expect(revoked.status == 6)
        #expect(revoked.stderr.contains("revoked"))
        // Expiry is tested in process, with a clock the test moves (RequestPipelineTests).
    }

    @Test func eachSocketServesOnlyItsOperations() throws {
        let daemon = try CofferdProcess()
        let onWorker = try daemon.coffer(["list", "--admin-socket", daemon.workerSocket])
        #expect(onWorker.status == 5)
        #expect(onWorker.stderr.contains("not served on the worker socket"))
        let putOnWorker = try daemon.coffer(
            ["put", "generic/aws-x", "--admin-socket", daemon.workerSocket],
            stdin: #"{"a": "b"}"#
        )
        #expect(putOnWorker.status == 5)
        #expect(try daemon.coffer(["put", "generic/aws-x"], stdin: #"{"a": "b"}"#).status == 0)
        #expect(try daemon.coffer(["grant", "w", "generic/aws-x"]).status == 0)
        let token = try daemon.coffer(["token", "issue", "w"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let getOnAdmin = try daemon.coffer(
            ["get", "generic/aws-x", "--worker-socket", daemon.adminSocket],
            token: token
        )
        #expect(getOnAdmin.status == 5)
        #expect(getOnAdmin.stderr.contains("write-only"))
        #expect(try daemon.coffer(["health"]).status == 0)
    }

    @Test func badInputGetsClearErrorsAndChangesNothing() throws {
        let daemon = try CofferdProcess()
        let canary = Canary("input")
        for (args, stdin, status) in [
            (["put", "generic/aws-x"], "not json \(canary.text)", Int32(2)),
            (["put", "generic/aws-x"], #"{"a": 1, "b": "\#(canary.text)"}"#, 2),
            (["put", "generic/aws-x"], "{}", 2),
            (["put", "generic/aws-x"], #"{"bad name": "\#(canary.text)"}"#, 2),
            (["put", "AWS/x"], #"{"a": "\#(canary.text)"}"#, 2),
            (["grant", "bad workflow", "generic/aws-x"], "", 2),
            (["delete", "generic/aws-nothing"], "", 3),
        ] {
            let result = try daemon.coffer(args, stdin: stdin)
            #expect(result.status == status, "\(args): \(result.stderr)")
            #expect(result.stderr.hasPrefix("coffer: error: "), "\(args)")
            #expect(!canary.occurs(in: result.stderr + result.stdout))
        }
        let list = try daemon.coffer(["list", "--json"])
        #expect(list.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "[\n\n]" || list.stdout.contains("[]"))
        let unreachable = try BuiltProducts.run("coffer", ["list", "--admin-socket", daemon.dir.child("none.sock")])
        #expect(unreachable.status == 9)
        #expect(unreachable.stderr.contains("coffer: hint:"))
        #expect(!canary.occurs(in: daemon.output))
    }
}

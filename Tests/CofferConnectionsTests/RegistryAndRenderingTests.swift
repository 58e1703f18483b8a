import CofferConnections
import CofferCore
import CofferCrypto
import CofferTestSupport
import Foundation
import Testing

@Suite struct RegistryTests {
    let dir = TemporaryDirectory(prefix: "types")

    func write(_ text: String) throws -> String {
        let path = dir.child("types-\(UUID().uuidString).json")
        try text.write(toFile: path, atomically: false, encoding: .utf8)
        return path
    }

    @Test func anOperatorsTypesFileAddsTypes() throws {
        let path = try write(
            """
            {"types": [{"name": "vault", "version": 2, "description": "A Vault token.",
              "variants": [{"name": "token", "fields": [
                {"name": "address", "secret": false, "required": true, "format": "https-url"},
                {"name": "namespace", "secret": false, "pattern": "[a-z/]+"},
                {"name": "token", "secret": true, "required": true, "maxLength": 512, "environment": "VAULT_TOKEN"}]}]}]}
            """
        )
        let registry = try TypeRegistry.load(file: path)
        #expect(registry.all.map(\.name).contains("vault") && registry.type(named: "aws") != nil)
        let ref = try ConnectionRef(parsing: "vault/main")
        let ok = try registry.check(
            ref,
            ConnectionDraft(
                publicFields: [try FieldName("address"): "https://vault.example.com"],
                secretFields: [try FieldName("token"): SecretBytes(utf8: "hvs.x")]
            ),
            existing: nil,
            limits: limits
        )
        #expect(ok.shape.typeVersion == 2 && ok.shape.variant == "token")
        let bad = #expect(throws: CofferError.self) {
            try registry.check(
                ref,
                ConnectionDraft(
                    publicFields: [try FieldName("address"): "https://v", try FieldName("namespace"): "A B"],
                    secretFields: [try FieldName("token"): SecretBytes(utf8: "t")]
                ),
                existing: nil,
                limits: limits
            )
        }
        #expect(bad?.message.contains("namespace") == true)
    }

    @Test(arguments: [
        (#"{"types": [{"name": "aws", "version": 1, "variants": [{"name": "a", "fields": []}]}]}"#, "declared twice"),
        (#"{"types": [{"name": "Bad", "version": 1, "variants": [{"name": "a", "fields": []}]}]}"#, "connection type"),
        (#"{"types": [{"name": "x", "version": 0, "variants": [{"name": "a", "fields": []}]}]}"#, "version"),
        (#"{"types": [{"name": "x", "version": 1, "variants": []}]}"#, "no variant"),
        (
            #"{"types": [{"name": "x", "version": 1, "variants": [{"name": "a", "fields": [{"name": "f", "secret": false, "pattern": "("}]}]}]}"#,
            "does not compile"
        ),
        (#"{"types": [{"name": "x"}]}"#, "lacks version"),
        ("not json", "not a JSON object"),
    ])
    func aBadTypesFileIsRefusedSayingWhy(_ text: String, _ reason: String) throws {
        let error = #expect(throws: CofferError.self) { try TypeRegistry.load(file: try write(text)) }
        #expect(error?.message.contains(reason) == true, "\(error?.message ?? "")")
    }
}

@Suite struct RenderingTests {
    func values(
        _ ref: String,
        _ variant: String,
        public: [String: String],
        secret: [String: String]
    ) throws
        -> ConnectionValues
    {
        var shape = ConnectionShape(typeVersion: 1, variant: variant)
        for (name, value) in `public` { shape.publicFields[try FieldName(name)] = value }
        var fields: [FieldName: SecretBytes] = [:]
        for (name, value) in secret { fields[try FieldName(name)] = SecretBytes(utf8: value) }
        var result = ConnectionValues(ref: try ConnectionRef(parsing: ref), version: 3, fields: fields, shape: shape)
        result.environment = TypeRegistry.builtIn.environment(of: result)
        return result
    }

    @Test func aCurlConfigAppliesTheBaseURLParametersHeadersAndAuth() throws {
        let token = try values(
            "http/api",
            "token",
            public: [
                "baseURL": "https://api.example.com/v2/", "param.q": "a b&c", "header.X-Key": "k {{ token.two }}",
            ],
            secret: ["token": #"t"1\"#, "token.two": "second"]
        )
        #expect(
            try token.curlConfig(path: "/items")
                == """
                url = "https://api.example.com/v2/items?q=a%20b%26c"
                header = "Authorization: Bearer t\\"1\\\\"
                header = "X-Key: k second"

                """
        )
        let basic = try values(
            "http/site",
            "basic",
            public: ["baseURL": "http://127.0.0.1:9", "username": "u"],
            secret: ["password": "p:w"]
        )
        #expect(try basic.curlConfig() == "url = \"http://127.0.0.1:9\"\nuser = \"u:p:w\"\n")
        let aws = try values("aws/x", "access-key", public: ["accessKeyID": "AKIA"], secret: ["secretAccessKey": "s"])
        #expect(throws: CofferError.self) { try aws.curlConfig() }
    }

    @Test func awsFieldsMapToTheVariablesTheSDKsRead() throws {
        let aws = try values(
            "aws/x",
            "access-key",
            public: ["accessKeyID": "AKIA", "region": "eu-west-1"],
            secret: ["secretAccessKey": "s", "sessionToken": "t"]
        )
        #expect(
            try aws.environmentVariables().map { "\($0.name)=\($0.value)" } == [
                "AWS_ACCESS_KEY_ID=AKIA", "AWS_REGION=eu-west-1", "AWS_SECRET_ACCESS_KEY=s", "AWS_SESSION_TOKEN=t",
            ]
        )
        let basic = try values("basic/x", "default", public: ["username": "u"], secret: ["password": "p"])
        #expect(throws: CofferError.self) { try basic.environmentVariables() }
        #expect(shellQuoted("it's") == #"'it'\''s'"#)
    }

    @Test func referencesParseAsRelayWritesThem() throws {
        let text =
            #"a ${connections.aws.'my-aws-account'} b ${connections.http."api".baseURL} ${connections.ssh.deploy}"#
        let found = try ConnectionReference.scan(text).map(\.reference)
        #expect(
            found == [
                ConnectionReference(ref: try ConnectionRef(parsing: "aws/my-aws-account")),
                ConnectionReference(ref: try ConnectionRef(parsing: "http/api"), field: try FieldName("baseURL")),
                ConnectionReference(ref: try ConnectionRef(parsing: "ssh/deploy")),
            ]
        )
        for bad in ["${connections.aws}", "${connections.AWS.'x'}", "${connections.aws.'x'", "${connections.aws.'x'.}"]
        {
            let error = #expect(throws: CofferError.self) { try ConnectionReference.scan(bad) }
            #expect(error?.code == .invalidArgument)
        }
    }

    @Test func templatesParseTheirCitations() throws {
        #expect(try Template(parsing: "Bearer {{ token }}").citations == [try FieldName("token")])
        #expect(try Template(parsing: "{{a}}{{ b.c }}x").citations == [try FieldName("a"), try FieldName("b.c")])
        for bad in ["{{ token", "token }}", "{{ two words }}", "{{}}"] {
            #expect(throws: CofferError.self) { try Template(parsing: bad) }
        }
    }
}

import CofferConnections
import CofferCore
import CofferCrypto
import Foundation
import Testing

/// A valid connection of every built-in type and variant, as the tests put them. Secret values carry `canary`.
struct Example: Sendable, CustomTestStringConvertible {
    var ref: String
    var variant: String
    var fields: [String: String]

    var testDescription: String { "\(ref) (\(variant))" }

    static let canary = "CANARY-7f3a9c"
    static let pem = """
        -----BEGIN CERTIFICATE-----
        MIIBszCCAVmgAwIBAgIUQ2FuYXJ5Q2FuYXJ5Q2FuYXJ5Q2FuYXJ5MAoGCCqGSM49
        -----END CERTIFICATE-----
        """
    static let privateKey = """
        -----BEGIN OPENSSH PRIVATE KEY-----
        b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gt
        -----END OPENSSH PRIVATE KEY-----
        """
    static let serviceAccountKey = """
        {"type": "service_account", "project_id": "p", "private_key_id": "k1", "client_email": "ci@p.iam.gserviceaccount.com",
         "private_key": "-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\\n-----END PRIVATE KEY-----\\n", "note": "\(canary)"}
        """

    static let all: [Example] = [
        Example(
            ref: "aws/prod",
            variant: "access-key",
            fields: [
                "accessKeyID": "AKIAIOSFODNN7EXAMPLE", "secretAccessKey": "wJalrXUtnFEMIK7MDENG/bPxRfiCYEXAMPLEKEY0",
                "sessionToken": "session-\(canary)", "region": "eu-west-1",
            ]
        ),
        Example(ref: "aws/role", variant: "assume-role", fields: ["roleARN": "arn:aws:iam::123456789012:role/deploy"]),
        Example(
            ref: "http/api",
            variant: "token",
            fields: [
                "baseURL": "https://api.example.com/v2", "token": "tok-\(canary)", "token.admin": "adm-\(canary)",
                "header.Authorization": "Bearer {{ token }}", "header.X-Admin": "{{token.admin}}",
                "param.api-version": "2024-01-01",
            ]
        ),
        Example(
            ref: "http/site",
            variant: "basic",
            fields: ["baseURL": "http://127.0.0.1:8080", "username": "deploy", "password": "pw-\(canary)"]
        ),
        Example(
            ref: "http/public",
            variant: "none",
            fields: ["baseURL": "https://status.example.com", "header.Accept": "application/json"]
        ),
        Example(
            ref: "azure/sub",
            variant: "default",
            fields: [
                "subscriptionID": "00000000-0000-0000-0000-000000000001",
                "clientID": "00000000-0000-0000-0000-000000000002",
                "tenantID": "00000000-0000-0000-0000-000000000003", "secret": "az-\(canary)",
            ]
        ),
        Example(ref: "gcp/ci", variant: "default", fields: ["serviceAccountKey": serviceAccountKey]),
        Example(
            ref: "kubernetes/cluster",
            variant: "default",
            fields: ["server": "https://k8s.example.com:6443", "certificateAuthority": pem, "token": "k8s-\(canary)"]
        ),
        Example(
            ref: "ssh/deploy",
            variant: "default",
            fields: [
                "privateKey": privateKey,
                "knownHosts":
                    "github.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl",
                "username": "git",
            ]
        ),
        Example(ref: "basic/db", variant: "default", fields: ["username": "app", "password": "pw-\(canary)"]),
        Example(ref: "generic/anything", variant: "default", fields: ["any_name": "v-\(canary)", "other": "x"]),
    ]

    /// The draft a client sends: public fields in clear, secret ones (as opened) separately.
    func draft(_ fields: [String: String]? = nil, variant: String? = nil) throws -> ConnectionDraft {
        let type = TypeRegistry.builtIn.type(named: try ConnectionRef(parsing: ref).type)!
        let spec = type.variant(named: variant ?? self.variant)
        var draft = ConnectionDraft(variant: variant ?? self.variant, secretFields: [:])
        for (name, value) in fields ?? self.fields {
            let field = try FieldName(name)
            if let s = spec?.spec(for: field), !s.secret {
                draft.publicFields[field] = value
            } else {
                draft.secretFields[field] = SecretBytes(utf8: value)
            }
        }
        return draft
    }
}

let limits = ConnectionLimits(maxFields: 64, maxValueBytes: 65536, maxConnectionBytes: 1 << 20)

func check(_ example: Example, _ fields: [String: String]? = nil, variant: String? = nil) throws -> CheckedConnection {
    try TypeRegistry.builtIn.check(
        try ConnectionRef(parsing: example.ref),
        try example.draft(fields, variant: variant),
        existing: nil,
        limits: limits
    )
}

/// The error a check ends with; it must be INVALID_ARGUMENT, name `field`, and never carry a canary.
func refusal(_ example: Example, _ fields: [String: String], naming field: String) throws -> CofferError? {
    do {
        _ = try check(example, fields)
        return nil
    } catch let error as CofferError {
        #expect(error.code == .invalidArgument, "\(error)")
        #expect(error.message.contains(field), "\(error.message)")
        #expect(!error.message.contains(Example.canary) && !"\(error)".contains(Example.canary))
        return error
    }
}

@Suite struct TypeCheckTests {
    @Test(arguments: Example.all)
    func aValidConnectionIsAccepted(_ example: Example) throws {
        let checked = try check(example)
        let type = try ConnectionRef(parsing: example.ref).type
        #expect(checked.shape.variant == example.variant && checked.shape.typeVersion == 1)
        let variant = TypeRegistry.builtIn.type(named: type)!.variant(named: example.variant)!
        for (name, _) in example.fields {
            let field = try FieldName(name)
            let secret = variant.spec(for: field)!.secret
            #expect((checked.secretFields[field] != nil) == secret, "\(name)")
            #expect((checked.shape.publicFields[field] != nil) == !secret, "\(name)")
        }
    }

    @Test(arguments: Example.all)
    func eachMissingRequiredFieldIsNamed(_ example: Example) throws {
        let variant = TypeRegistry.builtIn.type(named: try ConnectionRef(parsing: example.ref).type)!
            .variant(named: example.variant)!
        for spec in variant.fields where spec.required && !spec.isFamily && !spec.generated {
            var fields = example.fields
            fields.removeValue(forKey: spec.name)
            if fields.isEmpty { continue }
            let error = try refusal(example, fields, naming: spec.name)
            #expect(error?.message.contains("is required") == true, "\(spec.name)")
        }
    }

    @Test(arguments: Example.all.filter { !$0.ref.hasPrefix("generic/") })
    func anUnknownFieldIsNamed(_ example: Example) throws {
        var fields = example.fields
        fields["notAField"] = Example.canary
        let error = try refusal(example, fields, naming: "notAField")
        #expect(error?.message.contains("is not a field of") == true)
    }

    @Test func malformedValuesAreNamedWithTheirRule() throws {
        let cases: [(String, String, String)] = [
            ("aws/prod", "accessKeyID", "not-an-access-key-\(Example.canary)"),
            ("aws/prod", "secretAccessKey", "short-\(Example.canary)"),
            ("aws/prod", "region", "moon-\(Example.canary)"),
            ("aws/role", "roleARN", "arn:aws:iam::12:role/\(Example.canary) x"),
            ("http/api", "baseURL", "ftp://\(Example.canary).example.com"),
            ("http/api", "baseURL", "http://\(Example.canary).example.com"),
            ("http/api", "baseURL", "https://user:\(Example.canary)@example.com"),
            ("http/api", "header.X-Admin", "Bearer {{ token.nothing }} \(Example.canary)"),
            ("http/api", "header.X-Admin", "Bearer {{ token \(Example.canary)"),
            ("http/api", "header.X-Admin", "line\n\(Example.canary)"),
            ("http/api", "token", "two\nlines \(Example.canary)"),
            ("http/site", "username", "with:colon\(Example.canary)"),
            ("azure/sub", "tenantID", "not-a-uuid-\(Example.canary)"),
            ("gcp/ci", "serviceAccountKey", #"{"type": "user", "secret": "\#(Example.canary)"}"#),
            ("gcp/ci", "serviceAccountKey", "not json \(Example.canary)"),
            ("kubernetes/cluster", "certificateAuthority", "not a pem \(Example.canary)"),
            ("kubernetes/cluster", "server", "k8s.example.com"),
            ("ssh/deploy", "privateKey", Example.pem + Example.canary),
            ("ssh/deploy", "knownHosts", "github.com \(Example.canary)"),
        ]
        for (ref, field, value) in cases {
            let example = Example.all.first { $0.ref == ref }!
            var fields = example.fields
            fields[field] = value
            #expect(try refusal(example, fields, naming: field) != nil, "\(ref) \(field)")
        }
    }

    @Test func aHeaderMayCiteOnlyTheConnectionsTokens() throws {
        let basic = Example.all.first { $0.ref == "http/site" }!
        var fields = basic.fields
        fields["header.X-Leak"] = "{{ password }}"
        let error = try refusal(basic, fields, naming: "header.X-Leak")
        #expect(error?.message.contains("cites password") == true)
        let token = Example.all.first { $0.ref == "http/api" }!
        fields = token.fields
        fields.removeValue(forKey: "token")
        fields.removeValue(forKey: "token.admin")
        fields.removeValue(forKey: "header.Authorization")
        fields.removeValue(forKey: "header.X-Admin")
        #expect(try refusal(token, fields, naming: "token")?.message.contains("at least one of") == true)
    }

    @Test func secretFieldsMustBeSealedAndGeneratedOnesCannotBeSet() throws {
        let example = Example.all.first { $0.ref == "aws/prod" }!
        var draft = try example.draft()
        draft.publicFields[try FieldName("secretAccessKey")] = "wJalrXUtnFEMIK7MDENGbPxRfiCANARY-7f3a9c"
        draft.secretFields.removeValue(forKey: try FieldName("secretAccessKey"))
        let clear = #expect(throws: CofferError.self) {
            try TypeRegistry.builtIn.check(try ConnectionRef(parsing: "aws/prod"), draft, existing: nil, limits: limits)
        }
        #expect(clear?.message.contains("must be sealed") == true && clear?.message.contains(Example.canary) == false)

        let role = Example.all.first { $0.ref == "aws/role" }!
        let checked = try check(role)
        let externalID = try #require(checked.shape.publicFields[try FieldName("externalID")])
        #expect(externalID.count == 32)
        #expect(try refusal(role, role.fields.merging(["externalID": "mine"]) { $1 }, naming: "externalID") != nil)
        // Kept when the connection is written again.
        let again = try TypeRegistry.builtIn.check(
            try ConnectionRef(parsing: "aws/role"),
            try role.draft(),
            existing: checked.shape,
            limits: limits
        )
        #expect(again.shape.publicFields[try FieldName("externalID")] == externalID)
    }

    @Test func unknownTypesAndVariantsAreRefusedAndUntypedConnectionsStayGeneric() throws {
        let draft = ConnectionDraft(secretFields: [try FieldName("k"): SecretBytes(utf8: "v")])
        let unknown = #expect(throws: CofferError.self) {
            try TypeRegistry.builtIn.check(try ConnectionRef(parsing: "vault/x"), draft, existing: nil, limits: limits)
        }
        #expect(unknown?.message.contains("generic/NAME") == true)
        var withVariant = draft
        withVariant.variant = "oauth"
        let variant = #expect(throws: CofferError.self) {
            try TypeRegistry.builtIn.check(
                try ConnectionRef(parsing: "http/x"),
                withVariant,
                existing: nil,
                limits: limits
            )
        }
        #expect(variant?.message.contains("token, basic, none") == true)
        // A connection stored before types keeps any fields, all secret, whatever its name's type.
        let legacy = try TypeRegistry.builtIn.check(
            try ConnectionRef(parsing: "aws/old"),
            draft,
            existing: .untyped,
            limits: limits
        )
        #expect(legacy.shape == .untyped && legacy.secretFields.count == 1)
    }

    @Test func limitsAreKept() throws {
        let example = Example.all.first { $0.ref == "generic/anything" }!
        var fields: [String: String] = [:]
        for n in 0..<65 { fields["f\(n)"] = "v" }
        #expect(try refusal(example, fields, naming: "64 fields") != nil)
        #expect(try refusal(example, ["big": String(repeating: "x", count: 70_000)], naming: "big") != nil)
        #expect(try refusal(example, [:], naming: "at least one field") != nil)
    }
}

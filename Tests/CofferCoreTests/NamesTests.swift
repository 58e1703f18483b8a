import CofferCore
import Testing

@Suite struct ConnectionRefTests {
    @Test func parsesTypeAndName() throws {
        let ref = try ConnectionRef(parsing: "aws/my-aws-account")
        #expect(ref.type == "aws")
        #expect(ref.name == "my-aws-account")
        #expect(ref.description == "aws/my-aws-account")
    }

    @Test(arguments: [
        "", "aws", "/name", "aws/", "AWS/name", "aws/na me", "aws/name/extra", "1aws/name", "aws/-name",
        "aws/n\u{0}ame", "aws/ñame", String(repeating: "a", count: 33) + "/name",
        "aws/" + String(repeating: "n", count: 129),
    ])
    func rejectsMalformed(_ text: String) {
        #expect(throws: CofferError.self) { try ConnectionRef(parsing: text) }
    }

    @Test func errorsNameTheProblemAndEscapeInput() throws {
        let error = try #require(throws: CofferError.self) { try ConnectionRef(parsing: "aws/bad\nname") }
        #expect(error.code == .invalidArgument)
        #expect(error.message.contains("connection name"))
        #expect(!error.message.contains("\n"))
    }

    @Test func longInputIsCutShortInErrors() throws {
        let long = "aws/" + String(repeating: "x", count: 10_000)
        let error = try #require(throws: CofferError.self) { try ConnectionRef(parsing: long) }
        #expect(error.message.count < 300)
    }

    @Test func acceptsTheLimits() throws {
        _ = try ConnectionRef(type: String(repeating: "a", count: 32), name: String(repeating: "b", count: 128))
        _ = try ConnectionRef(type: "http_api-2", name: "Prod.Eu-1_x")
    }
}

@Suite struct OtherNameTests {
    @Test func workflowNames() throws {
        _ = try WorkflowName("deploy-prod.v2")
        #expect(throws: CofferError.self) { try WorkflowName("") }
        #expect(throws: CofferError.self) { try WorkflowName("de ploy") }
        #expect(throws: CofferError.self) { try WorkflowName("a/b") }
    }

    @Test func fieldNames() throws {
        _ = try FieldName("access_key_id")
        _ = try FieldName("_private")
        #expect(throws: CofferError.self) { try FieldName("1st") }
        #expect(throws: CofferError.self) { try FieldName(String(repeating: "f", count: 65)) }
    }

    @Test func runIDs() throws {
        _ = try RunID("gh-run:1234/attempt=2")
        #expect(throws: CofferError.self) { try RunID("has space") }
        #expect(throws: CofferError.self) { try RunID("") }
    }

    @Test func statusCodesAreGRPCs() {
        #expect(CofferError.Code.invalidArgument.rawValue == 3)
        #expect(CofferError.Code.permissionDenied.rawValue == 7)
        #expect(CofferError.Code.unauthenticated.rawValue == 16)
        #expect(CofferError.Code(rawValue: 5) == .notFound)
        #expect(CofferError.Code(rawValue: 99) == nil)
    }

    @Test func aTokenPastedIntoANameIsNeverQuoted() {
        let token = "cft_0123456789abcdef_c2VjcmV0LXBhcnQtb2YtdGhlLXRva2Vu"
        for attempt in [token, "aws/" + token, "x " + token] {
            let error = try? #require(throws: CofferError.self) { _ = try ConnectionRef(parsing: attempt) }
            #expect(error?.code == .invalidArgument)
            #expect(error.map { !$0.message.contains("c2VjcmV0") && !$0.message.contains("0123456789abcdef") } == true)
            #expect(error?.message.contains("workflow token") == true)
        }
        let workflow = try? #require(throws: CofferError.self) { _ = try WorkflowName(token) }
        #expect(workflow.map { !$0.message.contains("c2VjcmV0") } == true)
        #expect(Validation.quoted("aws/prod") == "\"aws/prod\"")
    }
}

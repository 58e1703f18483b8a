import CofferCore
import CofferStore
import CofferTestSupport
import CofferWire
import Foundation
import Testing

@testable import CofferServer

/// Typed connections through the request path: checked against their type after unsealing, described without
/// their secrets, updated without resending them, got with which fields are public.
@Suite struct TypedRequestTests {
    static let base = ["baseURL": "https://api.example.com", "header.Accept": "application/json"]

    @Test func aTypedPutIsCheckedDescribedAndGotWithItsPublicFieldsMarked() async throws {
        let server = try InProcessServer()
        let canary = Canary("typed")
        let put = try await server.call(try server.put("http/api", public: Self.base, secret: ["token": canary.text]))
        #expect(put.status.code == .ok, "\(put.status.message)")
        guard case .put(let created)? = put.result else { throw CofferError(.internal, "no put") }
        #expect(created.connection.variant == "token" && created.connection.typeVersion == 1)
        #expect(created.connection.secretFields == ["token"])

        var describe = Coffer_V1_DescribeRequest()
        describe.connection = "http/api"
        let described = try await server.call(.describe(describe))
        guard case .describe(let info)? = described.result else { throw CofferError(.internal, "no describe") }
        #expect(info.connection.publicFields.map(\.name) == ["baseURL", "header.Accept"])
        #expect(info.connection.publicFields.map(\.value) == ["https://api.example.com", "application/json"])
        #expect(info.connection.fields == ["baseURL", "header.Accept", "token"])
        #expect(!canary.occurs(in: try described.serializedBytes() as [UInt8]))

        _ = try await server.call(InProcessServer.grant("w", "http/api"))
        let issued = try await server.call(InProcessServer.issue("w"))
        guard case .issueToken(let token)? = issued.result else { throw CofferError(.internal, "no token") }
        let got = try await server.call(InProcessServer.get("http/api", token: token.token), as: InProcessServer.worker)
        guard case .get(let values)? = got.result else { throw CofferError(.internal, "no get") }
        #expect(values.variant == "token" && values.typeVersion == 1)
        #expect(values.fields.map(\.name) == ["baseURL", "header.Accept", "token"])
        #expect(values.fields.map(\.public) == [true, true, false])
        #expect(values.fields.last.map { canary.occurs(in: Array($0.value)) } == true)

        let listed = try await server.call(.list(Coffer_V1_ListRequest()))
        #expect(!canary.occurs(in: try listed.serializedBytes() as [UInt8]))
        for record in try await server.trail() { #expect(!canary.occurs(in: try record.serializedBytes() as [UInt8])) }
    }

    @Test func aRefusedConnectionNamesTheFieldAndTheRuleAndLeavesNothing() async throws {
        let server = try InProcessServer()
        let canary = Canary("refused")
        let cases: [(Coffer_V1_Request.OneOf_Operation, String)] = [
            (try server.put("http/a", public: [:], secret: ["token": canary.text]), "baseURL is required"),
            (
                try server.put("http/a", public: Self.base, secret: ["token": canary.text, "extra": canary.text]),
                "extra"
            ),
            (try server.put("http/a", public: ["baseURL": "ftp://\(canary.text)"], secret: ["token": "t"]), "baseURL"),
            (
                try server.put("http/a", public: Self.base.merging(["token": canary.text]) { $1 }, secret: [:]),
                "must be sealed"
            ),
            (
                try server.put(
                    "http/a",
                    public: Self.base.merging(["header.X": "{{ password }}"]) { $1 },
                    secret: ["token": "t"]
                ),
                "cites password"
            ),
            (try server.put("http/a", variant: "oauth", public: Self.base, secret: ["token": "t"]), "no variant oauth"),
            (try server.put("vault/a", public: [:], secret: ["token": canary.text]), "no connection type vault"),
        ]
        for (request, reason) in cases {
            let answer = try await server.call(request)
            #expect(answer.status.code == .invalidArgument, "\(reason): \(answer.status.message)")
            #expect(answer.status.message.contains(reason), "\(answer.status.message)")
            #expect(!canary.occurs(in: answer.status.message))
        }
        let listed = try await server.call(.list(Coffer_V1_ListRequest()))
        guard case .list(let list)? = listed.result else { throw CofferError(.internal, "no list") }
        #expect(list.connections.isEmpty)
        let trail = try await server.trail()
        let puts = trail.filter { $0.operation == "Put" }
        #expect(puts.count == cases.count && puts.allSatisfy { $0.outcome == .invalidArgument })
        for record in trail { #expect(!canary.occurs(in: try record.serializedBytes() as [UInt8])) }
    }

    @Test func anUpdateChangesAPublicFieldAndKeepsTheSecrets() async throws {
        let server = try InProcessServer()
        let secret = Canary("kept")
        _ = try await server.call(try server.put("http/api", public: Self.base, secret: ["token": secret.text]))
        let token = try await server.granted("generic/other", ["v": "x"])
        _ = try await server.call(InProcessServer.grant("w", "http/api"))

        let updated = try await server.call(
            try server.update(
                "http/api",
                setPublic: ["baseURL": "https://api2.example.com"],
                remove: ["header.Accept"],
                expectedVersion: 1
            )
        )
        #expect(updated.status.code == .ok, "\(updated.status.message)")
        guard case .update(let info)? = updated.result else { throw CofferError(.internal, "no update") }
        #expect(info.connection.version == 2 && info.connection.fields == ["baseURL", "token"])
        let got = try await server.call(InProcessServer.get("http/api", token: token), as: InProcessServer.worker)
        guard case .get(let values)? = got.result else { throw CofferError(.internal, "no get") }
        #expect(values.version == 2)
        #expect(
            values.fields.map { String(decoding: $0.value, as: UTF8.self) } == [
                "https://api2.example.com", secret.text,
            ]
        )

        // A second token, a stale version, a secret in clear, a field not set, an update naming nothing.
        let refusals: [(Coffer_V1_Request.OneOf_Operation, Coffer_V1_Code, String)] = [
            (try server.update("http/api", setSecret: ["token.two": "second"], expectedVersion: 2), .ok, ""),
            (
                try server.update("http/api", setPublic: ["baseURL": "https://x.example.com"], expectedVersion: 2),
                .failedPrecondition, "version 3"
            ),
            (try server.update("http/api", setPublic: ["token": "in clear"]), .invalidArgument, "must be sealed"),
            (try server.update("http/api", remove: ["header.Nothing"]), .invalidArgument, "is not set"),
            (try server.update("http/api", remove: ["baseURL"]), .invalidArgument, "baseURL is required"),
            (try server.update("http/api"), .invalidArgument, "at least one field"),
            (
                try server.update("http/nothing", setPublic: ["baseURL": "https://x.example.com"]), .notFound,
                "http/nothing"
            ),
        ]
        for (request, code, reason) in refusals {
            let answer = try await server.call(request)
            #expect(answer.status.code == code, "\(reason): \(answer.status.message)")
            #expect(reason.isEmpty || answer.status.message.contains(reason), "\(answer.status.message)")
        }
        let again = try await server.call(InProcessServer.get("http/api", token: token), as: InProcessServer.worker)
        guard case .get(let last)? = again.result else { throw CofferError(.internal, "no get") }
        #expect(last.version == 3 && last.fields.map(\.name) == ["baseURL", "token", "token.two"])
        #expect(last.fields[1].value == Data(secret.text.utf8))
        for record in try await server.trail() { #expect(!secret.occurs(in: try record.serializedBytes() as [UInt8])) }
    }

    @Test func listTypesNamesEveryBuiltInTypeAndGetMapsTheEnvironment() async throws {
        let server = try InProcessServer()
        let types = try await server.call(.listTypes(Coffer_V1_ListTypesRequest()))
        guard case .listTypes(let list)? = types.result else { throw CofferError(.internal, "no types") }
        #expect(list.types.map(\.name) == ["aws", "azure", "basic", "gcp", "generic", "http", "kubernetes", "ssh"])
        let onWorker = try await server.call(.listTypes(Coffer_V1_ListTypesRequest()), as: InProcessServer.worker)
        #expect(onWorker.status.code == .permissionDenied)

        _ = try await server.call(
            try server.put(
                "aws/prod",
                public: ["accessKeyID": "AKIAIOSFODNN7EXAMPLE", "region": "eu-west-1"],
                secret: ["secretAccessKey": String(repeating: "k", count: 40)]
            )
        )
        let token = try await server.granted("generic/x", ["v": "x"])
        _ = try await server.call(InProcessServer.grant("w", "aws/prod"))
        let got = try await server.call(InProcessServer.get("aws/prod", token: token), as: InProcessServer.worker)
        guard case .get(let values)? = got.result else { throw CofferError(.internal, "no get: \(got.status.message)") }
        #expect(values.fields.map(\.environment) == ["AWS_ACCESS_KEY_ID", "AWS_REGION", "AWS_SECRET_ACCESS_KEY"])
    }
}

/// The change feed through the request path: each committed change is answered with its revision, in order
/// and without gaps; a refused change and a read are answered with none.
@Suite struct RevisionRequestTests {
    @Test func committedChangesAreAnsweredWithTheirRevisions() async throws {
        let server = try InProcessServer()
        var revisions: [UInt64] = []
        for request in [
            try server.put("generic/a", ["k": "v"]),  // 1
            InProcessServer.grant("w", "generic/a"),  // 2
            InProcessServer.grant("w", "generic/a"),  // already granted: none
            try server.put("generic/a", ["k": "v"]),  // exists: none
            try server.overwrite("generic/a", ["k": "v2"]),  // 3
            InProcessServer.issue("w"),  // 4
            .list(Coffer_V1_ListRequest()),  // a read: none
        ] {
            revisions.append(try await server.call(request).revision)
        }
        #expect(revisions == [1, 2, 0, 0, 3, 4, 0])

        // Several changes in one turn share one commit and still get one revision each, in request order.
        let batch = try await server.turn(
            frames: try (0..<5).map { n in
                var request = Coffer_V1_Request()
                request.id = UInt64(n + 1)
                request.operation = try server.put("generic/b\(n)", ["k": "v"])
                return try request.serializedBytes()
            },
            as: InProcessServer.admin
        )
        #expect(batch.responses.map(\.revision) == [5, 6, 7, 8, 9])
    }
}

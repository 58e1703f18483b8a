import CofferCore
import CofferStore
import CofferTestSupport
import CofferWire
import Foundation
import Testing

@testable import CofferServer

/// The request path in process: decode, authorise, perform, audit, encode, with a real store and writer.
@Suite struct RequestPipelineTests {
    @Test func aConnectionGoesFromPutToGetAndEveryStepIsAudited() async throws {
        let server = try InProcessServer()
        let canary = Canary("pipeline")
        let token = try await server.granted("generic/aws-prod", ["secret": canary.text])
        let got = try await server.call(
            InProcessServer.get("generic/aws-prod", token: token),
            as: InProcessServer.worker
        )
        #expect(got.status.code == .ok)
        guard case .get(let values)? = got.result else {
            Issue.record("no values")
            return
        }
        #expect(values.fields.map(\.name) == ["secret"])
        #expect(values.fields.first.map { canary.occurs(in: Array($0.value)) } == true)

        let trail = try await server.trail()
        #expect(trail.map(\.operation) == ["Put", "Grant", "IssueToken", "Get"])
        #expect(trail.map(\.sequence) == [1, 2, 3, 4])
        #expect(trail[3].workflow == "w" && trail[3].socket == "worker" && trail[3].peerUid == 1000)
        for record in trail { #expect(!canary.occurs(in: try record.serializedBytes() as [UInt8])) }
    }

    @Test func anExpiredTokenIsRefusedWhenTheClockPassesItsExpiry() async throws {
        let server = try InProcessServer()
        let token = try await server.granted("generic/http-api", ["token": "t"])
        server.clock.advance(599)
        #expect(
            try await server.call(InProcessServer.get("generic/http-api", token: token), as: InProcessServer.worker)
                .status.code == .ok
        )
        server.clock.advance(1)
        let expired = try await server.call(
            InProcessServer.get("generic/http-api", token: token),
            as: InProcessServer.worker
        )
        #expect(expired.status.code == .unauthenticated)
        #expect(expired.status.message == "the token has expired")
        #expect(expired.result == nil)
    }

    @Test func eachSocketServesOnlyItsOperationsAndTheAdminSocketItsUIDs() async throws {
        let server = try InProcessServer()
        let onWorker = try await server.call(.list(Coffer_V1_ListRequest()), as: InProcessServer.worker)
        #expect(onWorker.status.code == .permissionDenied)
        #expect(onWorker.status.message.contains("not served on the worker socket"))
        let getOnAdmin = try await server.call(InProcessServer.get("generic/aws-x", token: "t"))
        #expect(getOnAdmin.status.code == .permissionDenied)
        #expect(getOnAdmin.status.message.contains("write-only"))
        let stranger = ClientIdentity(socket: .admin, peer: PeerCredentials(pid: 1, uid: 4242, gid: 4242))
        let refused = try await server.call(.list(Coffer_V1_ListRequest()), as: stranger)
        #expect(refused.status.code == .permissionDenied)
        #expect(
            try await server.call(.health(Coffer_V1_HealthRequest()), as: InProcessServer.worker).status.code == .ok
        )
    }

    @Test func aMalformedFrameIsAnsweredWithIDZeroAndTheTurnGoesOn() async throws {
        let server = try InProcessServer()
        var health = Coffer_V1_Request(.health(Coffer_V1_HealthRequest()), id: 7)
        let (responses, served) = try await server.turn(
            frames: [[0xff, 0xff, 0xff], try health.serializedBytes(), try Coffer_V1_Request().serializedBytes()],
            as: InProcessServer.admin
        )
        #expect(served == 3)
        #expect(responses.map(\.id) == [0, 7, 0])
        #expect(responses.map(\.status.code) == [.invalidArgument, .ok, .invalidArgument])
        health.id = 8
        // Health is not audited; the two malformed frames are.
        #expect(try await server.trail().map(\.operation) == ["Malformed", "Malformed"])
    }

    @Test func pipelinedGetsAreServedInOrderInOneTurn() async throws {
        let server = try InProcessServer()
        let token = try await server.granted("generic/aws-a", ["k": "a"])
        _ = try await server.call(try server.put("generic/aws-b", ["k": "b"]))
        _ = try await server.call(InProcessServer.grant("w", "generic/aws-b"))
        let requests = (0..<16).map { index in
            Coffer_V1_Request(
                InProcessServer.get(index % 2 == 0 ? "generic/aws-a" : "generic/aws-b", token: token),
                id: UInt64(100 + index)
            )
        }
        let (responses, served) = try await server.turn(requests, as: InProcessServer.worker)
        #expect(served == 16)
        #expect(responses.map(\.id) == (0..<16).map { UInt64(100 + $0) })
        let values = responses.compactMap { response -> String? in
            guard case .get(let get)? = response.result else { return nil }
            return String(decoding: get.fields[0].value, as: UTF8.self)
        }
        #expect(values == (0..<16).map { $0 % 2 == 0 ? "a" : "b" })
        let gets = try await server.trail().filter { $0.operation == "Get" }
        #expect(gets.count == 16)
        #expect(gets.map(\.connection) == (0..<16).map { $0 % 2 == 0 ? "generic/aws-a" : "generic/aws-b" })
    }

    @Test func aTurnStopsOnceItsAnswersAreLarge() async throws {
        let server = try InProcessServer { $0.maxAnswerBytesPerTurn = 100_000 }
        let token = try await server.granted("generic/http-big", ["v": String(repeating: "x", count: 60_000)])
        let requests = (0..<5).map {
            Coffer_V1_Request(InProcessServer.get("generic/http-big", token: token), id: UInt64($0 + 1))
        }
        let (responses, served) = try await server.turn(requests, as: InProcessServer.worker)
        // Two answers pass the budget; the other three wait for the next turn and are neither served nor audited.
        #expect(served == 2)
        #expect(responses.map(\.id) == [1, 2])
        #expect(try await server.trail().filter { $0.operation == "Get" }.count == 2)
    }

    @Test func aValueIsWithheldWhenItsRecordCannotBeWritten() async throws {
        let server = try InProcessServer()
        let canary = Canary("withheld")
        let token = try await server.granted("generic/aws-prod", ["secret": canary.text])
        server.journal.close()
        let answer = try await server.call(
            InProcessServer.get("generic/aws-prod", token: token),
            as: InProcessServer.worker
        )
        #expect(answer.status.code == .unavailable)
        #expect(answer.status.message.contains("audit trail cannot be written"))
        #expect(answer.result == nil)
        #expect(!canary.occurs(in: try answer.serializedBytes() as [UInt8]))
        // And cofferd says it is not serving, and why.
        let health = try await server.call(.health(Coffer_V1_HealthRequest()), as: InProcessServer.worker)
        guard case .health(let report)? = health.result else {
            Issue.record("no health")
            return
        }
        #expect(report.status == "not-serving")
        #expect(report.reason.contains("audit trail cannot be written"))
    }

    @Test func denialsOfUnknownCallersShareOneCountedRecord() async throws {
        let server = try InProcessServer()
        _ = try await server.granted("generic/aws-prod", ["k": "v"])
        let forged = (0..<20).map {
            Coffer_V1_Request(
                InProcessServer.get("generic/aws-prod", token: "cft_0123456789abcdef_nothing"),
                id: UInt64($0 + 1)
            )
        }
        let (responses, _) = try await server.turn(forged, as: InProcessServer.worker)
        #expect(responses.allSatisfy { $0.status.code == .unauthenticated })
        let denials = try await server.trail().filter { $0.operation == "Get" }
        #expect(denials.count == 1)
        #expect(denials.first?.count == 20)
        #expect(denials.first?.outcome == .unauthenticated)
        #expect(denials.first?.peerUid == 1000)
    }

    @Test func pagingTheTrailEndsWhereItStoodWhenTheQueryBegan() async throws {
        let server = try InProcessServer()
        for index in 0..<5 { _ = try await server.call(try server.put("generic/aws-c\(index)", ["k": "v"])) }
        let page = try await server.call(InProcessServer.audit(after: 0, limit: 2))
        guard case .audit(let first)? = page.result else {
            Issue.record("no page")
            return
        }
        #expect(first.records.map(\.sequence) == [1, 2])
        #expect(first.lastSequence == 5)
        // Each query is itself audited, yet paging to last_sequence ends.
        let trail = try await server.trail()
        #expect(trail.count >= 6)
        #expect(trail.map(\.sequence) == Array(1...UInt64(trail.count)))
    }

    @Test func changesFromOneTurnShareACommitAndFailAlone() async throws {
        let server = try InProcessServer()
        let requests = [
            Coffer_V1_Request(try server.put("generic/aws-a", ["k": "1"])),
            Coffer_V1_Request(try server.put("generic/aws-a", ["k": "2"])),
            Coffer_V1_Request(try server.put("generic/aws-b", ["k": "3"])),
            Coffer_V1_Request(InProcessServer.grant("w", "generic/aws-none")),
        ]
        let (responses, _) = try await server.turn(requests)
        #expect(responses.map(\.status.code) == [.ok, .alreadyExists, .ok, .notFound])
        let trail = try await server.trail()
        #expect(trail.map(\.operation) == ["Put", "Put", "Put", "Grant"])
        #expect(trail.map(\.outcome) == [.ok, .alreadyExists, .ok, .notFound])
    }
}

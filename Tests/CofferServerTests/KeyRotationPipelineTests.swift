import CofferCore
import CofferStore
import CofferTestSupport
import CofferWire
import Foundation
import Logging
import Testing

@testable import CofferServer

/// Key rotation through the request path: RotateKey, KeyStatus and RetireKey, audited, with the re-encryption
/// service moving every record while Gets go on.
@Suite struct KeyRotationPipelineTests {
    func keyStatus(_ server: InProcessServer) async throws -> Coffer_V1_KeyStatusResponse {
        let response = try await server.call(.keyStatus(Coffer_V1_KeyStatusRequest()))
        guard case .keyStatus(let status)? = response.result else {
            throw CofferError(.internal, "KeyStatus: \(response.status.message)")
        }
        return status
    }

    @Test func aRotationServesTheNewKeyAtOnceAndTheServiceMovesEveryRecord() async throws {
        let server = try InProcessServer()
        let canary = Canary("rotation")
        let token = try await server.granted("generic/aws-prod", ["secret": canary.text])
        for n in 0..<20 { _ = try await server.call(try server.put("generic/http-api-\(n)", ["token": "t\(n)"])) }
        // A token that outlives the grace period, so that it holds generation 1.
        _ = try await server.call(InProcessServer.issue("w", ttl: 3 * 86_400))
        let before = server.store.keys.keyID

        let rotated = try await server.call(.rotateKey(Coffer_V1_RotateKeyRequest()))
        #expect(rotated.status.code == .ok)
        guard case .rotateKey(let response)? = rotated.result else {
            Issue.record("no generation: \(rotated.status.message)")
            return
        }
        let generation = response.generation
        #expect(generation.number == 2 && generation.state == "active" && generation.keyID != before.hex)
        let key = try await server.call(.getPublicKey(Coffer_V1_GetPublicKeyRequest()))
        guard case .getPublicKey(let publicKey)? = key.result else {
            Issue.record("no key")
            return
        }
        #expect(publicKey.keyID == generation.keyID)

        let service = ReencryptionService(
            commits: server.commits,
            batch: 4,
            idleInterval: .milliseconds(10),
            logger: Logger(label: "test")
        )
        let running = Task { try await service.run() }
        defer { running.cancel() }
        var gets = 0
        while !(try await keyStatus(server).reencryption.done) {
            let got = try await server.call(
                InProcessServer.get("generic/aws-prod", token: token),
                as: InProcessServer.worker
            )
            #expect(got.status.code == .ok, "\(got.status.message)")
            gets += 1
            try await Task.sleep(for: .milliseconds(5))
        }
        running.cancel()
        let status = try await keyStatus(server)
        #expect(status.generations.map(\.state) == ["decrypt-only", "active"])
        #expect(status.generations[0].fields == 0 && status.generations[0].records == 0)
        #expect(status.generations[1].fields == 21)
        #expect(status.generations[0].liveTokens == 2)
        #expect(status.reencryption.recordsCurrent == status.reencryption.recordsTotal)
        let got = try await server.call(
            InProcessServer.get("generic/aws-prod", token: token),
            as: InProcessServer.worker
        )
        guard case .get(let values)? = got.result else {
            Issue.record("no values after the re-encryption: \(got.status.message)")
            return
        }
        #expect(values.fields.first.map { canary.occurs(in: Array($0.value)) } == true)

        // Retiring: refused within the grace period, then while the token hashed under it lives.
        var retire = Coffer_V1_RetireKeyRequest()
        retire.generation = 1
        let early = try await server.call(.retireKey(retire))
        #expect(early.status.code == .failedPrecondition && early.status.message.contains("taken until"))
        server.clock.advance(StoreConfiguration.defaultSealedKeyGrace.timeInterval + 1)
        let tokenHeld = try await server.call(.retireKey(retire))
        #expect(tokenHeld.status.code == .failedPrecondition && tokenHeld.status.message.contains("1 live tokens"))
        retire.generation = 0
        #expect(try await server.call(.retireKey(retire)).status.code == .invalidArgument)

        let trail = try await server.trail().map(\.operation)
        #expect(trail.contains("RotateKey") && trail.contains("KeyStatus"))
        #expect(trail.filter { $0 == "RetireKey" }.count == 3)  // refusals are audited too
    }

    @Test func keyOperationsAreServedOnlyOnTheAdminSocket() async throws {
        let server = try InProcessServer()
        for operation: Coffer_V1_Request.OneOf_Operation in [
            .rotateKey(Coffer_V1_RotateKeyRequest()), .keyStatus(Coffer_V1_KeyStatusRequest()),
            .retireKey(Coffer_V1_RetireKeyRequest()),
        ] {
            let response = try await server.call(operation, as: InProcessServer.worker)
            #expect(response.status.code == .permissionDenied)
        }
        #expect(server.store.keys.active.number == 1)
    }
}

import CofferClient
import CofferCore
import CofferCrypto
import CofferTestSupport
import CofferWire
import Foundation
import Testing

/// The real cofferd, driven through the Swift client library and by hand on the socket.
@Suite struct ServeProtocolTests {
    func secrets(_ values: [String: String]) -> [String: SecretBytes] {
        values.mapValues { SecretBytes(utf8: $0) }
    }

    func text(_ fields: [String: SecretBytes]) -> [String: String] {
        fields.mapValues(\.testText)
    }

    @Test func clientLibraryRoundTrip() throws {
        let daemon = try CofferdProcess()
        let admin = try CofferAdminClient(socketPath: daemon.adminSocket)
        let worker = try CofferWorkerClient(socketPath: daemon.workerSocket)
        let ref = try ConnectionRef(parsing: "basic/db")
        let info = try admin.put(ref, values: secrets(["username": "svc", "password": "pw1"]))
        #expect(info.version == 1)
        #expect(try admin.grant(try WorkflowName("etl"), ref))
        #expect(try !admin.grant(try WorkflowName("etl"), ref))
        let token = try admin.issueToken(for: try WorkflowName("etl"), ttlSeconds: 600)
        let got = try worker.get(ref, token: token.token)
        #expect(got.version == 1)
        #expect(text(got.fields) == ["username": "svc", "password": "pw1"])

        try admin.overwrite(ref, values: secrets(["password": "pw2"]), expectedVersion: 1)
        #expect(text(try worker.get(ref, token: token.token).fields) == ["password": "pw2"])
        #expect(throws: CofferError.self) { try admin.overwrite(ref, values: secrets(["password": "x"]), expectedVersion: 1) }
        #expect(try admin.list().first?.grants == ["etl"])

        try admin.delete(ref)
        let error = try #require(throws: CofferError.self) { try worker.get(ref, token: token.token) }
        #expect(error.code == .notFound)
    }

    @Test func pipelinedRequestsAnswerInOrder() throws {
        let daemon = try CofferdProcess()
        let connection = try CofferConnection(socketPath: daemon.adminSocket)
        var requests: [Coffer_V1_Request] = []
        for _ in 0..<20 {
            var request = Coffer_V1_Request()
            request.health = Coffer_V1_HealthRequest()
            requests.append(request)
            request.list = Coffer_V1_ListRequest()
            requests.append(request)
        }
        let responses = try connection.pipeline(requests)
        #expect(responses.count == 40)
        #expect(responses.map(\.id) == Array(1...40))
        #expect(responses.allSatisfy { $0.status.code == .ok })
    }

    @Test func valuesSealedToAnotherKeyAreRefused() throws {
        let daemon = try CofferdProcess()
        let admin = try CofferAdminClient(socketPath: daemon.adminSocket)
        let (_, keyID) = try admin.publicKey()
        let stranger = randomKeyRing()
        var put = Coffer_V1_PutRequest()
        put.connection = "aws/x"
        put.keyID = keyID.hex
        var field = Coffer_V1_SealedField()
        field.name = "k"
        field.sealedValue = Data(try SealedValue.seal(SecretBytes(utf8: "v"), to: stranger.publicKey, keyID: keyID).ciphertext)
        put.fields = [field]
        var request = Coffer_V1_Request()
        request.put = put
        let response = try admin.connection.call(request)
        #expect(response.status.code == .invalidArgument)
        put.keyID = "zz"
        request.put = put
        #expect(try admin.connection.call(request).status.code == .invalidArgument)
        #expect(try admin.list().isEmpty)
    }

    @Test func badFramesLeaveCofferdServingOthers() throws {
        let daemon = try CofferdProcess(arguments: ["--read-timeout", "1", "--max-frame-size", "65536"])
        let health = { () throws -> Bool in
            try CofferWorkerClient(socketPath: daemon.workerSocket).health().status == "serving"
        }

        // A frame whose body is not a Request: an error with id 0, and the same connection keeps working.
        let garbage = try CofferConnection(socketPath: daemon.workerSocket)
        try garbage.writeRaw([4, 0xff, 0xff, 0xff, 0xff])
        let answer = try garbage.readResponse()
        #expect(answer.id == 0)
        #expect(answer.status.code == .invalidArgument)
        #expect(try garbage.health().status == "serving")

        // A length prefix over the limit: refused at once, before the body arrives, and the connection closed.
        let oversized = try CofferConnection(socketPath: daemon.workerSocket)
        try oversized.writeRaw(Framing.varint(10_000_000))
        let refusal = try oversized.readResponse()
        #expect(refusal.status.code == .resourceExhausted)
        #expect(throws: CofferError.self) { _ = try oversized.readResponse() }

        // A varint that never ends (its value stays 0, so only its length can refuse it).
        let malformed = try CofferConnection(socketPath: daemon.adminSocket)
        try malformed.writeRaw([UInt8](repeating: 0x80, count: 11) + [0x01])
        #expect(try malformed.readResponse().status.code == .invalidArgument)

        // Half a frame: others are served while it waits, and it is cut off at the read deadline.
        let half = try CofferConnection(socketPath: daemon.adminSocket)
        try half.writeRaw(Framing.varint(100) + [UInt8](repeating: 0x08, count: 50))
        #expect(try health())
        let deadline = try half.readResponse()
        #expect(deadline.status.code == .deadlineExceeded)
        #expect(throws: CofferError.self) { _ = try half.readResponse() }

        // A client that disappears mid-frame.
        let vanishing = try CofferConnection(socketPath: daemon.workerSocket)
        try vanishing.writeRaw(Framing.varint(40) + [0x08])
        vanishing.close()

        #expect(try health())
        #expect(try CofferAdminClient(socketPath: daemon.adminSocket).list().isEmpty)
        #expect(daemon.stop() == 0)
    }

    @Test func theWorkerSocketTakesOnlySmallFrames() throws {
        let daemon = try CofferdProcess()
        // 80 KiB of values: a put the admin socket takes.
        let admin = try CofferAdminClient(socketPath: daemon.adminSocket)
        let big = String(repeating: "v", count: 40 * 1024)
        try admin.put(try ConnectionRef(parsing: "http/big"), values: secrets(["a": big, "b": big]))
        // A frame of that size on the worker socket is refused on its length prefix alone.
        let worker = try CofferConnection(socketPath: daemon.workerSocket)
        try worker.writeRaw(Framing.varint(80 * 1024))
        let refusal = try worker.readResponse()
        #expect(refusal.status.code == .resourceExhausted)
        #expect(try CofferWorkerClient(socketPath: daemon.workerSocket).health().status == "serving")
    }

    @Test func theConnectionLimitHoldsAndFrees() throws {
        let daemon = try CofferdProcess(arguments: ["--max-connections", "2"])
        // The start-up probe's connections count until cofferd sees them close: retry until admitted.
        func admitted(_ path: String) throws -> CofferConnection {
            for _ in 0..<100 {
                let connection = try CofferConnection(socketPath: path)
                if (try? connection.health()) != nil { return connection }
                connection.close()
                usleep(20_000)
            }
            throw CofferError(.unavailable, "never admitted")
        }
        let first = try admitted(daemon.adminSocket)
        let second = try admitted(daemon.workerSocket)
        let third = try CofferConnection(socketPath: daemon.workerSocket)
        let refused = try third.readResponse()
        #expect(refused.status.code == .unavailable)
        first.close()
        // The slot frees once cofferd sees the close.
        var served = false
        for _ in 0..<100 where !served {
            served = (try? CofferWorkerClient(socketPath: daemon.workerSocket).health()) != nil
            if !served { usleep(20_000) }
        }
        #expect(served)
        // The second connection was held open throughout; only the first was closed.
        withExtendedLifetime(second) {}
    }

    @Test func sigtermWithAnIdleClientExitsAndDataReopens() throws {
        let dir = TemporaryDirectory(prefix: "cofferd")
        let daemon = try CofferdProcess(dir: dir)
        let admin = try CofferAdminClient(socketPath: daemon.adminSocket)
        let ref = try ConnectionRef(parsing: "aws/kept")
        try admin.put(ref, values: secrets(["k": "durable"]))
        try admin.grant(try WorkflowName("w"), ref)
        let token = try admin.issueToken(for: try WorkflowName("w"), ttlSeconds: 600)
        // An idle client stays connected through the shutdown.
        let idle = try CofferConnection(socketPath: daemon.workerSocket)
        #expect(try idle.health().status == "serving")

        let started = Date()
        #expect(daemon.stop(signal: SIGTERM, timeout: 5) == 0, "cofferd did not exit on SIGTERM: \(daemon.output)")
        #expect(Date().timeIntervalSince(started) < 5)
        #expect(throws: CofferError.self) { _ = try idle.health() }
        #expect(!FileManager.default.fileExists(atPath: daemon.adminSocket))

        let again = try CofferdProcess(dir: dir, name: "again", dataDirectory: daemon.dataDirectory)
        let got = try CofferWorkerClient(socketPath: again.workerSocket).get(ref, token: token.token)
        #expect(text(got.fields) == ["k": "durable"])
        #expect(again.stop(signal: SIGINT) == 0)
    }

    @Test func cofferdLeavesNoCoreDump() throws {
        let daemon = try CofferdProcess()
        let limits = try String(contentsOfFile: "/proc/\(daemon.process.processIdentifier)/limits", encoding: .utf8)
        let line = try #require(limits.split(separator: "\n").first { $0.hasPrefix("Max core file size") })
        #expect(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst(4).prefix(2) == ["0", "0"])
    }

    @Test func sigtermAnswersTheRequestInFlightAndLosesNoAcknowledgedWrite() throws {
        let dir = TemporaryDirectory(prefix: "cofferd")
        let daemon = try CofferdProcess(dir: dir)
        let (key, keyID) = try CofferAdminClient(socketPath: daemon.adminSocket).publicKey()
        var frames: [UInt8] = []
        for index in 1...200 {
            var put = Coffer_V1_PutRequest()
            put.connection = "http/c\(index)"
            put.keyID = keyID.hex
            var field = Coffer_V1_SealedField()
            field.name = "v"
            field.sealedValue = Data(try SealedValue.seal(SecretBytes(utf8: "\(index)"), to: key, keyID: keyID).ciphertext)
            put.fields = [field]
            var request = Coffer_V1_Request()
            request.id = UInt64(index)
            request.put = put
            frames += try Framing.frame(request)
        }
        let connection = try CofferConnection(socketPath: daemon.adminSocket)
        try connection.writeRaw(frames)
        // Once the first is answered, cofferd is working through the rest when SIGTERM arrives.
        var acknowledged = [try connection.readResponse()].filter { $0.status.code == .ok }.map(\.id)
        kill(daemon.process.processIdentifier, SIGTERM)
        while let response = try? connection.readResponse() {
            #expect(response.status.code == .ok)
            acknowledged.append(response.id)
        }
        #expect(daemon.waitForExit() == 0, "\(daemon.output)")
        #expect(acknowledged == Array(1...UInt64(acknowledged.count)))

        let again = try CofferdProcess(dir: dir, name: "again", dataDirectory: daemon.dataDirectory)
        let stored = Set(try CofferAdminClient(socketPath: again.adminSocket).list().map(\.connection))
        for id in acknowledged { #expect(stored.contains("http/c\(id)"), "acknowledged put \(id) was lost") }
    }

    @Test func aSecondCofferdOnTheSameDirectoryRefuses() throws {
        let dir = TemporaryDirectory(prefix: "cofferd")
        let first = try CofferdProcess(dir: dir)
        let second = try CofferdProcess(dir: dir, name: "second", dataDirectory: first.dataDirectory,
                                        waitUntilServing: false)
        let status = second.waitForExit()
        #expect(status != nil && status != 0)
        #expect(second.output.contains("another cofferd is serving"))
        // A live socket is not taken over either, even from another data directory.
        let thief = try CofferdProcess(dir: dir, name: "thief", dataDirectory: dir.child("other"),
                                       arguments: ["--admin-socket", first.adminSocket], waitUntilServing: false)
        #expect(thief.waitForExit() ?? 0 != 0)
        #expect(thief.output.contains("another process is listening"))
        #expect(try CofferWorkerClient(socketPath: first.workerSocket).health().status == "serving")
        #expect(try CofferAdminClient(socketPath: first.adminSocket).health().status == "serving")
    }
}

/// Runs the coffer CLI as another uid, as a process of another user on the same host would.
@Suite(.enabled(if: getuid() == 0, "needs root to become another uid with setpriv"))
struct AdminAllowListTests {
    static let nobody: UInt32 = 65534

    /// A copy of the coffer binary in a directory the other uid can reach.
    func cofferAsNobody(_ dir: TemporaryDirectory, _ arguments: [String]) throws -> ProcessResult {
        let binary = dir.child("coffer")
        if !FileManager.default.fileExists(atPath: binary) {
            try FileManager.default.copyItem(atPath: BuiltProducts.path("coffer"), toPath: binary)
        }
        return try BuiltProducts.run("/usr/bin/setpriv",
                                     ["--reuid", "\(Self.nobody)", "--regid", "\(Self.nobody)", "--clear-groups",
                                      binary] + arguments)
    }

    @Test func aUIDOutsideTheAllowListIsRefused() throws {
        let dir = TemporaryDirectory(prefix: "cofferd")
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: dir.path)
        // The socket's group lets the other uid connect, so the refusal must come from SO_PEERCRED.
        let daemon = try CofferdProcess(dir: dir, arguments: [
            "--admin-socket-mode", "0660", "--admin-socket-group", "\(Self.nobody)",
            "--worker-socket-mode", "0666",
        ])
        let refused = try cofferAsNobody(dir, ["list", "--admin-socket", daemon.adminSocket])
        #expect(refused.status == 5, "\(refused.stderr)")
        #expect(refused.stderr.contains("uid \(Self.nobody) may not use the admin socket"))
        // The worker socket serves any uid that can reach it (both halves of `health` aimed at it).
        let health = try cofferAsNobody(dir, ["health", "--admin-socket", daemon.workerSocket,
                                              "--worker-socket", daemon.workerSocket])
        #expect(health.status == 0, "\(health.stderr)")
        // The refusal is audited with the kernel's uid.
        let records = try CofferAdminClient(socketPath: daemon.adminSocket).audit()
        #expect(records.contains { $0.peerUid == Self.nobody && $0.outcome == .permissionDenied && $0.operation == "List" })

        // Allowed once listed.
        let allowing = try CofferdProcess(dir: dir, name: "allowing", dataDirectory: dir.child("data2"), arguments: [
            "--admin-socket-mode", "0660", "--admin-socket-group", "\(Self.nobody)", "--admin-uid", "\(Self.nobody)",
        ])
        let allowed = try cofferAsNobody(dir, ["list", "--admin-socket", allowing.adminSocket])
        #expect(allowed.status == 0, "\(allowed.stderr)")
    }

    @Test func theDefaultAdminSocketIsItsOwnersOnly() throws {
        let dir = TemporaryDirectory(prefix: "cofferd")
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: dir.path)
        let daemon = try CofferdProcess(dir: dir)
        let mode = try FileManager.default.attributesOfItem(atPath: daemon.adminSocket)[.posixPermissions] as? Int
        #expect(mode == 0o600)
        let refused = try cofferAsNobody(dir, ["list", "--admin-socket", daemon.adminSocket])
        #expect(refused.status == 5)
        #expect(refused.stderr.contains("permission denied"))
    }
}

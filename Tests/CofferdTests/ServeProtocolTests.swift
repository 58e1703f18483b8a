import CofferClient
import CofferCore
import CofferCrypto
import CofferTestSupport
import CofferWire
import Foundation
import Testing

/// The real cofferd, driven through the Swift client library and by hand on the socket.
@Suite struct ServeProtocolTests {
    func secrets(_ values: [String: String]) throws -> [FieldName: SecretBytes] {
        Dictionary(uniqueKeysWithValues: try values.map { (try FieldName($0.key), SecretBytes(utf8: $0.value)) })
    }

    func text(_ fields: [FieldName: SecretBytes]) -> [String: String] {
        Dictionary(uniqueKeysWithValues: fields.map { ($0.key.rawValue, $0.value.testText) })
    }

    @Test func clientLibraryRoundTrip() throws {
        let daemon = try CofferdProcess()
        let admin = try CofferAdminClient(socketPath: daemon.adminSocket)
        let worker = try CofferWorkerClient(socketPath: daemon.workerSocket)
        let ref = try ConnectionRef(parsing: "generic/basic-db")
        let info = try admin.put(ref, values: try secrets(["username": "svc", "password": "pw1"]))
        #expect(info.version == 1)
        #expect(try admin.grant(try WorkflowName("etl"), ref))
        #expect(try !admin.grant(try WorkflowName("etl"), ref))
        let token = try admin.issueToken(for: try WorkflowName("etl"), ttl: .seconds(600))
        let got = try worker.get(ref, token: token.token)
        #expect(got.version == 1)
        #expect(text(got.fields) == ["username": "svc", "password": "pw1"])

        try admin.overwrite(ref, values: try secrets(["password": "pw2"]), expectedVersion: 1)
        #expect(text(try worker.get(ref, token: token.token).fields) == ["password": "pw2"])
        #expect(throws: CofferError.self) {
            try admin.overwrite(ref, values: try secrets(["password": "x"]), expectedVersion: 1)
        }
        #expect(try admin.list().first?.grants.map(\.rawValue) == ["etl"])

        try admin.delete(ref)
        let error = try #require(throws: CofferError.self) { try worker.get(ref, token: token.token) }
        #expect(error.code == .notFound)
    }

    @Test func pipelinedRequestsAnswerInOrder() throws {
        let daemon = try CofferdProcess()
        let connection = try CofferSocket(socketPath: daemon.adminSocket)
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
        put.connection = "generic/aws-x"
        put.keyID = keyID.hex
        var field = Coffer_V1_SealedField()
        field.name = "k"
        field.sealedValue = Data(
            try SealedValue.seal(SecretBytes(utf8: "v"), to: stranger.publicKey, keyID: keyID).ciphertext
        )
        put.fields = [field]
        var request = Coffer_V1_Request()
        request.put = put
        let response = try admin.socket.call(request)
        #expect(response.status.code == .invalidArgument)
        put.keyID = "zz"
        request.put = put
        #expect(try admin.socket.call(request).status.code == .invalidArgument)
        #expect(try admin.list().isEmpty)
    }

    @Test func badFramesLeaveCofferdServingOthers() throws {
        let daemon = try CofferdProcess(arguments: ["--read-timeout", "1", "--max-frame-size", "65536"])
        let health = { () throws -> Bool in
            try CofferWorkerClient(socketPath: daemon.workerSocket).health().serving
        }

        // A frame whose body is not a Request: an error with id 0, and the same connection keeps working.
        let garbage = try CofferSocket(socketPath: daemon.workerSocket)
        try garbage.writeRaw([4, 0xff, 0xff, 0xff, 0xff])
        let answer = try garbage.readResponse()
        #expect(answer.id == 0)
        #expect(answer.status.code == .invalidArgument)
        #expect(try garbage.health().serving)

        // A length prefix over the limit: refused at once, before the body arrives, and the connection closed.
        let oversized = try CofferSocket(socketPath: daemon.workerSocket)
        try oversized.writeRaw(Framing.varint(10_000_000))
        let refusal = try oversized.readResponse()
        #expect(refusal.status.code == .resourceExhausted)
        #expect(throws: CofferError.self) { _ = try oversized.readResponse() }

        // A varint that never ends (its value stays 0, so only its length can refuse it).
        let malformed = try CofferSocket(socketPath: daemon.adminSocket)
        try malformed.writeRaw([UInt8](repeating: 0x80, count: 11) + [0x01])
        #expect(try malformed.readResponse().status.code == .invalidArgument)

        // Half a frame: others are served while it waits, and it is cut off at the read deadline.
        let half = try CofferSocket(socketPath: daemon.adminSocket)
        try half.writeRaw(Framing.varint(100) + [UInt8](repeating: 0x08, count: 50))
        #expect(try health())
        let deadline = try half.readResponse()
        #expect(deadline.status.code == .deadlineExceeded)
        #expect(throws: CofferError.self) { _ = try half.readResponse() }

        // A client that disappears mid-frame.
        let vanishing = try CofferSocket(socketPath: daemon.workerSocket)
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
        try admin.put(try ConnectionRef(parsing: "generic/http-big"), values: try secrets(["a": big, "b": big]))
        // A frame of that size on the worker socket is refused on its length prefix alone.
        let worker = try CofferSocket(socketPath: daemon.workerSocket)
        try worker.writeRaw(Framing.varint(80 * 1024))
        let refusal = try worker.readResponse()
        #expect(refusal.status.code == .resourceExhausted)
        #expect(try CofferWorkerClient(socketPath: daemon.workerSocket).health().serving)
    }

    @Test func aFullWorkerSocketMakesRoomByClosingTheIdlest() throws {
        let daemon = try CofferdProcess(arguments: ["--max-worker-clients", "2"])
        var clients: [CofferSocket] = []
        for _ in 0..<4 {
            let client = try CofferSocket(socketPath: daemon.workerSocket)
            #expect(try client.health().serving)
            clients.append(client)
        }
        // The oldest idle client was closed to admit a newer one, and told so.
        let notice = try clients[0].readResponse()
        #expect(notice.id == 0)
        #expect(notice.status.code == .unavailable)
        #expect(notice.status.message.contains("idle"))
        #expect(throws: CofferError.self) { _ = try clients[0].readResponse() }
        // The newest are served, and the admin socket never shared the worker socket's limit.
        #expect(try clients[3].health().serving)
        #expect(try CofferAdminClient(socketPath: daemon.adminSocket).list().isEmpty)
    }

    @Test func clientsHoldingHalfAFrameMakeRoomForANewWorkerAsIdleOnesDo() throws {
        let daemon = try CofferdProcess(arguments: [
            "--max-worker-clients", "16", "--max-worker-clients-per-uid", "16", "--read-timeout", "600",
        ])
        // Each sends the length of a frame and one byte of it, then nothing: more of them than there are places.
        var stuck: [CofferSocket] = []
        for _ in 0..<24 {
            let client = try CofferSocket(socketPath: daemon.workerSocket, timeout: .milliseconds(500))
            try client.writeRaw([16, 0x08])
            stuck.append(client)
        }
        let fresh = try CofferSocket(socketPath: daemon.workerSocket)
        #expect(try fresh.health().serving)
        // Those closed to make room were told why; the others still wait for the rest of their frame.
        let notices = stuck.filter { client in
            guard let notice = try? client.readResponse() else { return false }
            return notice.status.code == .unavailable && notice.status.message.contains("to admit another")
        }
        #expect(notices.count == 9)
    }

    @Test func sigtermWithAnIdleClientExitsAndDataReopens() throws {
        let dir = TemporaryDirectory(prefix: "cofferd")
        let daemon = try CofferdProcess(dir: dir)
        let admin = try CofferAdminClient(socketPath: daemon.adminSocket)
        let ref = try ConnectionRef(parsing: "generic/aws-kept")
        try admin.put(ref, values: try secrets(["k": "durable"]))
        try admin.grant(try WorkflowName("w"), ref)
        let token = try admin.issueToken(for: try WorkflowName("w"), ttl: .seconds(600))
        // An idle client stays connected through the shutdown.
        let idle = try CofferSocket(socketPath: daemon.workerSocket)
        #expect(try idle.health().serving)

        #expect(daemon.stop(signal: SIGTERM) == 0, "cofferd did not exit on SIGTERM: \(daemon.output)")
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
            put.connection = "generic/http-c\(index)"
            put.keyID = keyID.hex
            var field = Coffer_V1_SealedField()
            field.name = "v"
            field.sealedValue = Data(
                try SealedValue.seal(SecretBytes(utf8: "\(index)"), to: key, keyID: keyID).ciphertext
            )
            put.fields = [field]
            var request = Coffer_V1_Request()
            request.id = UInt64(index)
            request.put = put
            frames += try Framing.frame(request)
        }
        let connection = try CofferSocket(socketPath: daemon.adminSocket)
        try connection.writeRaw(frames)
        // Once the first is answered, cofferd is working through the rest when SIGTERM arrives.
        var acknowledged = [try connection.readResponse()].filter { $0.status.code == .ok }.map(\.id)
        kill(daemon.process.processIdentifier, SIGTERM)
        while let response = try? connection.readResponse(), response.id != 0 {
            #expect(response.status.code == .ok)
            acknowledged.append(response.id)
        }
        #expect(daemon.waitForExit() == 0, "\(daemon.output)")
        #expect(acknowledged == acknowledged.indices.map { UInt64($0) + 1 })

        let again = try CofferdProcess(dir: dir, name: "again", dataDirectory: daemon.dataDirectory)
        let stored = Set(try CofferAdminClient(socketPath: again.adminSocket).list().map(\.ref.description))
        for id in acknowledged { #expect(stored.contains("generic/http-c\(id)"), "acknowledged put \(id) was lost") }
    }

    @Test func sigtermAmongPipeliningClientsAnswersEveryRequestItReadAndTellsEachClientWhy() throws {
        let dir = TemporaryDirectory(prefix: "cofferd")
        let daemon = try CofferdProcess(dir: dir)
        let admin = try CofferAdminClient(socketPath: daemon.adminSocket)
        let ref = try ConnectionRef(parsing: "generic/aws-drain")
        try admin.put(ref, values: try secrets(["k": "v"]))
        try admin.grant(try WorkflowName("w"), ref)
        let token = try admin.issueToken(for: try WorkflowName("w"), ttl: .seconds(600)).token
        var frames: [UInt8] = []
        for index in 1...1_000 {
            var get = Coffer_V1_GetRequest()
            get.connection = ref.description
            get.token = token.withUnsafeBytes { String(decoding: $0, as: UTF8.self) }
            var request = Coffer_V1_Request()
            request.id = UInt64(index)
            request.get = get
            frames += try Framing.frame(request)
        }
        // Every client sends its requests without reading, so that cofferd is held back by its unread answers.
        let clients = try (0..<8).map { _ in try CofferSocket(socketPath: daemon.workerSocket) }
        for client in clients { try client.writeRaw(frames) }
        usleep(300_000)
        kill(daemon.process.processIdentifier, SIGTERM)
        var answered = 0
        for client in clients {
            var ids: [UInt64] = []
            var last: Coffer_V1_Response?
            while let response = try? client.readResponse() {
                if response.id == 0 {
                    last = response
                    break
                }
                #expect(response.status.code == .ok)
                ids.append(response.id)
            }
            // The requests it read, in order and each once, then why it closes.
            #expect(ids == ids.indices.map { UInt64($0) + 1 })
            #expect(last?.status.code == .unavailable && last?.status.message.contains("shutting down") == true)
            answered += ids.count
        }
        #expect(daemon.waitForExit() == 0, "\(daemon.output)")
        // What cofferd read it answered: the trail holds exactly as many Gets as came back.
        let again = try CofferdProcess(dir: dir, name: "again", dataDirectory: daemon.dataDirectory)
        var records = 0
        var after: UInt64 = 0
        while true {
            let page = try CofferAdminClient(socketPath: again.adminSocket).audit(after: after)
            records += page.records.filter { $0.operation == .get }.count
            guard let last = page.records.last, last.sequence < page.lastSequence else { break }
            after = last.sequence
        }
        #expect(records == answered)
    }

    @Test func aSecondCofferdOnTheSameDirectoryRefuses() throws {
        let dir = TemporaryDirectory(prefix: "cofferd")
        let first = try CofferdProcess(dir: dir)
        let second = try CofferdProcess(
            dir: dir,
            name: "second",
            dataDirectory: first.dataDirectory,
            waitUntilServing: false
        )
        let status = second.waitForExit()
        #expect(status != nil && status != 0)
        #expect(second.output.contains("another cofferd is serving"))
        // Removing every file that is not the store's does not release the lock: it is on the directory.
        for name in try FileManager.default.contentsOfDirectory(atPath: first.dataDirectory)
        where !["data.mdb", "lock.mdb", "master.key"].contains(name) {
            try FileManager.default.removeItem(atPath: first.dataDirectory + "/" + name)
        }
        let third = try CofferdProcess(
            dir: dir,
            name: "third",
            dataDirectory: first.dataDirectory,
            waitUntilServing: false
        )
        #expect(third.waitForExit() ?? 0 != 0)
        #expect(third.output.contains("another cofferd is serving"))
        // Another directory whose store and key are hard links to the first's: the store's inode is locked.
        let linked = dir.child("linked")
        try FileManager.default.createDirectory(atPath: linked, withIntermediateDirectories: false)
        chmod(linked, 0o700)
        for name in ["data.mdb", "master.key"] {
            #expect(link(first.dataDirectory + "/" + name, linked + "/" + name) == 0)
        }
        let fourth = try CofferdProcess(dir: dir, name: "fourth", dataDirectory: linked, waitUntilServing: false)
        #expect(fourth.waitForExit() ?? 0 != 0)
        #expect(fourth.output.contains("another cofferd is serving the store"))
        // A live socket is not taken over either, even from another data directory.
        let thief = try CofferdProcess(
            dir: dir,
            name: "thief",
            dataDirectory: dir.child("other"),
            arguments: ["--admin-socket", first.adminSocket],
            waitUntilServing: false
        )
        #expect(thief.waitForExit() ?? 0 != 0)
        #expect(thief.output.contains("another process is listening"))
        #expect(try CofferWorkerClient(socketPath: first.workerSocket).health().serving)
        #expect(try CofferAdminClient(socketPath: first.adminSocket).health().serving)
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
        return try BuiltProducts.run(
            "/usr/bin/setpriv",
            [
                "--reuid", "\(Self.nobody)", "--regid", "\(Self.nobody)", "--clear-groups",
                binary,
            ] + arguments
        )
    }

    @Test func aUIDOutsideTheAllowListIsRefused() throws {
        let dir = TemporaryDirectory(prefix: "cofferd")
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: dir.path)
        // The socket's group lets the other uid connect, so the refusal must come from SO_PEERCRED.
        let daemon = try CofferdProcess(
            dir: dir,
            arguments: [
                "--admin-socket-mode", "0660", "--admin-socket-group", "\(Self.nobody)",
                "--worker-socket-group", "\(Self.nobody)",
            ]
        )
        let refused = try cofferAsNobody(dir, ["list", "--admin-socket", daemon.adminSocket])
        #expect(refused.status == 5, "\(refused.stderr)")
        #expect(refused.stderr.contains("uid \(Self.nobody) may not use the admin socket"))
        // The worker socket serves any uid that can reach it (both halves of `health` aimed at it).
        let health = try cofferAsNobody(
            dir,
            [
                "health", "--admin-socket", daemon.workerSocket,
                "--worker-socket", daemon.workerSocket,
            ]
        )
        #expect(health.status == 0, "\(health.stderr)")
        // The refusal is audited with the kernel's uid.
        let records = try CofferAdminClient(socketPath: daemon.adminSocket).audit().records
        #expect(
            records.contains { $0.peerUID == Self.nobody && $0.outcome == .permissionDenied && $0.action == .connect }
        )

        // Allowed once listed.
        let allowing = try CofferdProcess(
            dir: dir,
            name: "allowing",
            dataDirectory: dir.child("data2"),
            arguments: [
                "--admin-socket-mode", "0660", "--admin-socket-group", "\(Self.nobody)", "--admin-uid",
                "\(Self.nobody)",
            ]
        )
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

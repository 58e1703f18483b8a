import CofferClient
import CofferCore
import CofferCrypto
import CofferTestSupport
import CofferWire
import Foundation
import Testing

/// Frames of `count` Puts of `http/<prefix><n>`, sealed to the daemon's key, with ids 1...count.
func putFrames(_ admin: CofferAdminClient, prefix: String, count: Int) throws -> [UInt8] {
    let (key, keyID) = try admin.publicKey()
    let sealed = Data(try SealedValue.seal(SecretBytes(utf8: "v"), to: key, keyID: keyID).ciphertext)
    var frames: [UInt8] = []
    for index in 1...count {
        var put = Coffer_V1_PutRequest()
        put.connection = "generic/http-\(prefix)\(index)"
        put.keyID = keyID.hex
        var field = Coffer_V1_SealedField()
        field.name = "v"
        field.sealedValue = sealed
        put.fields = [field]
        var request = Coffer_V1_Request()
        request.id = UInt64(index)
        request.put = put
        frames += try Framing.frame(request)
    }
    return frames
}

func healthFrames(_ ids: ClosedRange<Int>) throws -> [UInt8] {
    var frames: [UInt8] = []
    for id in ids {
        var request = Coffer_V1_Request()
        request.id = UInt64(id)
        request.health = Coffer_V1_HealthRequest()
        frames += try Framing.frame(request)
    }
    return frames
}

/// How a client's end is handled: every request cofferd read is answered before it closes.
@Suite struct LifecycleTests {
    @Test func aBrokenPrefixAfterAThousandRequestsComesAfterTheirThousandAnswers() throws {
        let daemon = try CofferdProcess()
        let client = try CofferSocket(socketPath: daemon.adminSocket)
        try client.writeRaw(try healthFrames(1...1000) + [UInt8](repeating: 0x80, count: 11))
        var answers: [Coffer_V1_Response] = []
        while let answer = try? client.readResponse() { answers.append(answer) }
        #expect(answers.count == 1001)
        #expect(answers.prefix(1000).map(\.id) == Array(1...1000))
        #expect(answers.last?.id == 0)
        #expect(answers.last?.status.code == .invalidArgument)
    }

    @Test func aHalfClosedClientGetsEveryAnswer() throws {
        let daemon = try CofferdProcess()
        let admin = try CofferAdminClient(socketPath: daemon.adminSocket)
        let client = try CofferSocket(socketPath: daemon.adminSocket)
        try client.writeRaw(try healthFrames(1...9) + putFrames(admin, prefix: "half", count: 1).map { $0 })
        client.shutdownWriting()
        var answers: [Coffer_V1_Response] = []
        while let answer = try? client.readResponse() { answers.append(answer) }
        #expect(answers.count == 10)
        #expect(answers.allSatisfy { $0.status.code == .ok })
        #expect(try admin.list().map(\.ref.description) == ["generic/http-half1"])
    }

    @Test func aClientThatNeverReadsStopsBeingRead() throws {
        let daemon = try CofferdProcess()
        let client = try CofferSocket(socketPath: daemon.workerSocket, timeout: .milliseconds(500))
        let chunk = try healthFrames(1...1000)
        var sent = 0
        // Writes block (and time out) once cofferd stops reading: what it took is bounded, not what was sent.
        while sent < 256 << 20 {
            do { try client.writeRaw(chunk) } catch { break }
            sent += chunk.count
        }
        #expect(sent < 16 << 20, "cofferd kept reading a client that took none of its answers (\(sent) bytes)")
        #expect(try CofferWorkerClient(socketPath: daemon.workerSocket).health().serving)
    }

    @Test func sigtermAnswersEveryRequestItReadAndExecutesNoOther() throws {
        let dir = TemporaryDirectory(prefix: "cofferd")
        let daemon = try CofferdProcess(dir: dir)
        let admin = try CofferAdminClient(socketPath: daemon.adminSocket)
        let writers = try (0..<8).map { writer in
            (
                writer, try CofferSocket(socketPath: daemon.adminSocket),
                try putFrames(admin, prefix: "w\(writer)-", count: 300)
            )
        }
        for (_, socket, frames) in writers { try socket.writeRaw(frames) }
        _ = try writers[0].1.readResponse()
        kill(daemon.process.processIdentifier, SIGTERM)
        var answered: [String: Coffer_V1_Code] = [:]
        for (writer, socket, _) in writers {
            var told = false
            while let answer = try? socket.readResponse() {
                // The last frame says why the connection ends; every other answers a request by its id.
                if answer.id == 0 {
                    told = answer.status.message.contains("shutting down")
                    break
                }
                answered["generic/http-w\(writer)-\(answer.id)"] = answer.status.code
            }
            #expect(told, "writer \(writer) was not told why its connection ended")
        }
        #expect(daemon.waitForExit() == 0, "\(daemon.output)")
        let again = try CofferdProcess(dir: dir, name: "again", dataDirectory: daemon.dataDirectory)
        let stored = Set(try CofferAdminClient(socketPath: again.adminSocket).list().map(\.ref.description))
        // Every acknowledged put is there; nothing unanswered was done.
        for (name, code) in answered where code == .ok {
            #expect(stored.contains(name), "acknowledged \(name) was lost")
        }
        for name in stored where name != "generic/http-w0-1" {
            #expect(answered[name] == .ok, "\(name) was stored without an answer")
        }
    }

    /// A client that connects and closes at once must give its place back however early it goes: one left
    /// behind would hold the shutdown for the whole grace period (and, before that, a place at the socket).
    @Test func clientsThatCloseAtOnceLeaveNothingForTheShutdownToWaitFor() throws {
        for round in 0..<3 {
            let daemon = try CofferdProcess(arguments: ["--shutdown-grace", "60"])
            for _ in 0..<300 {
                if case .success(let fd) = UnixSocket.connect(round % 2 == 0 ? daemon.workerSocket : daemon.adminSocket)
                {
                    close(fd)
                }
            }
            let started = Date()
            #expect(daemon.stop(timeout: 20) == 0, "round \(round): \(daemon.output)")
            #expect(Date().timeIntervalSince(started) < 20)
            #expect(!daemon.output.contains("clients closed at the end of the grace period"))
        }
    }

    /// SIGTERM the moment the sockets answer: the signal is never lost, and start-up work does not hold it up.
    @Test func sigtermAtOnceAfterStartIsHonoured() throws {
        for round in 0..<10 {
            let daemon = try CofferdProcess()
            #expect(daemon.stop(timeout: 20) == 0, "round \(round): \(daemon.output)")
        }
    }

    @Test func sighupDrainsLikeSigterm() throws {
        let daemon = try CofferdProcess()
        #expect(try CofferWorkerClient(socketPath: daemon.workerSocket).health().serving)
        #expect(daemon.stop(signal: SIGHUP) == 0)
        #expect(daemon.output.contains("shutting down"))
    }
}

import CofferCore
import CofferTestSupport
import CofferWire
import Logging
import NIOCore
import NIOEmbedded
import Synchronization
import Testing

@testable import CofferServer

/// Counts the reads the client handler lets through to the socket.
private final class ReadCounter: ChannelOutboundHandler, Sendable {
    typealias OutboundIn = ByteBuffer
    let reads = Atomic<Int>(0)

    func read(context: ChannelHandlerContext) {
        reads.add(1, ordering: .relaxed)
        context.read()
    }
}

/// One client's handler on a test channel, in front of the real request path.
private struct TestClient {
    let channel: NIOAsyncTestingChannel
    let counter: ReadCounter

    init(_ server: InProcessServer, socket: SocketRole = .worker) async throws {
        channel = NIOAsyncTestingChannel()
        let counter = ReadCounter()
        self.counter = counter
        let admission = Admission(configuration: server.configuration)
        let identity = socket == .admin ? InProcessServer.admin : InProcessServer.worker
        guard case .admitted(let slot, _) = admission.admit(channel, socket: socket, peer: identity.peer) else {
            throw CofferError(.internal, "not admitted")
        }
        let pipeline = server.pipeline
        let channel = self.channel
        try await channel.testingEventLoop.executeInContext {
            try channel.pipeline.syncOperations.addHandler(counter)
            try channel.pipeline.syncOperations.addHandler(
                ClientHandler(
                    pipeline: pipeline,
                    identity: identity,
                    slot: slot,
                    admission: admission,
                    budget: FrameBudget(limit: 1 << 20, threshold: 64 * 1024),
                    logger: Logger(label: "test")
                )
            )
        }
        try await channel.connect(to: try SocketAddress(unixDomainSocketPath: "/unused"))
    }

    func send(_ bytes: [UInt8]) async throws {
        try await channel.writeInbound(ByteBuffer(bytes: bytes))
    }

    /// Reads answers until `count` have come or a second passes without one.
    func answers(_ count: Int) async throws -> [Coffer_V1_Response] {
        var responses: [Coffer_V1_Response] = []
        var idle = 0
        while responses.count < count, idle < 200 {
            if let buffer = try await channel.readOutbound(as: ByteBuffer.self) {
                responses += try InProcessServer.responses(in: buffer)
                idle = 0
            } else {
                idle += 1
                try await Task.sleep(for: .milliseconds(5))
            }
        }
        return responses
    }

    func isClosed() async throws -> Bool {
        for _ in 0..<200 {
            if !channel.isActive { return true }
            try await Task.sleep(for: .milliseconds(5))
        }
        return false
    }
}

private func health(_ id: UInt64) throws -> [UInt8] {
    try Framing.frame(Coffer_V1_Request(.health(Coffer_V1_HealthRequest()), id: id))
}

@Suite struct ClientHandlerTests {
    @Test func framesSplitAcrossReadsAreAnsweredInOrder() async throws {
        let server = try InProcessServer()
        let client = try await TestClient(server)
        let bytes = try health(1) + health(2) + health(3)
        for chunk in stride(from: 0, to: bytes.count, by: 3) {
            try await client.send(Array(bytes[chunk..<min(chunk + 3, bytes.count)]))
        }
        let answers = try await client.answers(3)
        #expect(answers.map(\.id) == [1, 2, 3])
        #expect(answers.allSatisfy { $0.status.code == .ok })
    }

    @Test func aBrokenPrefixIsAnsweredAfterEveryRequestBeforeIt() async throws {
        let server = try InProcessServer()
        let client = try await TestClient(server)
        var bytes: [UInt8] = []
        for id in 1...100 { bytes += try health(UInt64(id)) }
        bytes += [UInt8](repeating: 0x80, count: 11)
        try await client.send(bytes)
        let answers = try await client.answers(101)
        #expect(answers.count == 101)
        #expect(answers.prefix(100).map(\.id) == Array(1...100))
        #expect(answers.last?.id == 0)
        #expect(answers.last?.status.code == .invalidArgument)
        #expect(try await client.isClosed())
    }

    @Test func aHalfClosedClientGetsEveryAnswerThenTheClose() async throws {
        let server = try InProcessServer()
        let client = try await TestClient(server)
        try await client.send(try health(1) + health(2))
        client.channel.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        let answers = try await client.answers(2)
        #expect(answers.map(\.id) == [1, 2])
        #expect(try await client.isClosed())
    }

    @Test func aHalfCloseInTheMiddleOfAFrameIsSaidAfterTheAnswers() async throws {
        let server = try InProcessServer()
        let client = try await TestClient(server)
        try await client.send(try health(1) + Array(health(2).prefix(3)))
        client.channel.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        let answers = try await client.answers(2)
        #expect(answers.map(\.id) == [1, 0])
        #expect(answers.last?.status.message.contains("middle of a frame") == true)
        #expect(try await client.isClosed())
    }

    @Test func drainingAnswersWhatWasReadThenCloses() async throws {
        let server = try InProcessServer()
        let client = try await TestClient(server)
        try await client.send(try health(1) + health(2) + Array(health(3).prefix(2)))
        client.channel.pipeline.fireUserInboundEventTriggered(ClientEvent.drain)
        let answers = try await client.answers(3)
        // Every whole request answered, then why it closes (the partial frame was never a request).
        #expect(answers.map(\.id) == [1, 2, 0])
        #expect(answers.last?.status.code == .unavailable)
        #expect(answers.last?.status.message.contains("shutting down") == true)
        #expect(try await client.isClosed())
    }

    @Test func aClientNotTakingItsAnswersIsNeitherServedNorRead() async throws {
        let server = try InProcessServer()
        let client = try await TestClient(server)
        client.channel.isWritable = false
        try await client.send(try health(1) + health(2))
        client.channel.pipeline.read()
        #expect(client.counter.reads.load(ordering: .relaxed) == 0)
        #expect(try await client.answers(1).isEmpty)
        // Once it takes its answers, it is served, and read again.
        client.channel.isWritable = true
        client.channel.pipeline.fireChannelWritabilityChanged()
        #expect(try await client.answers(2).map(\.id) == [1, 2])
        client.channel.pipeline.read()
        #expect(client.counter.reads.load(ordering: .relaxed) >= 1)
    }

    @Test func theReadDeadlineRunsOnlyWhileCofferdIsReading() async throws {
        let server = try InProcessServer()
        let client = try await TestClient(server)
        // Half a frame from a client cofferd is not reading (it takes none of its answers): no deadline.
        client.channel.isWritable = false
        try await client.send(Array(try health(1).prefix(2)))
        await client.channel.testingEventLoop.advanceTime(by: .seconds(60))
        #expect(client.channel.isActive)
        #expect(try await client.answers(1).isEmpty)
        // Read again, the frame has the read timeout to be finished.
        client.channel.isWritable = true
        client.channel.pipeline.fireChannelWritabilityChanged()
        await client.channel.testingEventLoop.advanceTime(by: .seconds(11))
        let answers = try await client.answers(1)
        #expect(answers.first?.status.code == .deadlineExceeded)
        #expect(try await client.isClosed())
    }

    @Test func anOversizedPrefixIsRefusedBeforeItsBodyArrives() async throws {
        let server = try InProcessServer()
        let client = try await TestClient(server)
        try await client.send(try health(1) + Framing.varint(10_000_000))
        let answers = try await client.answers(2)
        #expect(answers.map(\.id) == [1, 0])
        #expect(answers.last?.status.code == .resourceExhausted)
        #expect(try await client.isClosed())
    }
}

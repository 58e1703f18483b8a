import CofferCore
import CofferWire
import Logging
import NIOCore

/// What the server tells a client's handler.
enum ClientEvent {
    /// cofferd is shutting down: read nothing more, answer what was read, then close.
    case drain
    /// The client was closed to make room for another: say so and close.
    case evict
}

/// One client of a cofferd socket, from its bytes to its answers, on the client's event loop.
///
/// What the client sends accumulates in one buffer; complete frames are copied out at their exact size, at
/// most a turn's worth at a time, and served in turns (`RequestPipeline`): one turn at a time, its answers
/// written with one flush. The socket is read only when no complete frame is waiting, the client's answers
/// are being taken and its buffered input is under its cap, so what one client makes cofferd hold is
/// bounded (input, frames waiting, answers not yet written) and a client that stops reading is simply no
/// longer read.
///
/// A client's end: on a broken length prefix or a deadline, every frame read before it is answered, then the
/// error, then the close; on a half-close, every complete frame is answered before the close; on drain, the
/// same with what was read; a partial frame is dropped with an error.
final class ClientHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let pipeline: RequestPipeline
    private let identity: ClientIdentity
    private let slot: ClientSlot
    private let admission: Admission
    private let budget: FrameBudget
    private let logger: Logger
    private let maxFrameSize: Int
    private let maxInput: Int
    /// The input buffer a client keeps while nothing waits in it.
    private let maxIdleInput = 4096
    private let maxReadyFrames: Int
    private let maxReadyBytes: Int
    private let idleTimeout: TimeAmount
    private let readTimeout: TimeAmount
    private let writeTimeout: TimeAmount

    private var input = ByteBuffer()
    /// Complete frames not yet answered, oldest first.
    private var ready: [Frame] = []
    private var readyBytes = 0
    /// The budget held for the large frame being received.
    private var reservation: FrameReservation?
    private var turnRunning = false
    /// The channel asked to read and was held back.
    private var readHeld = false
    private var inputClosed = false
    private var framingError: CofferError?
    private var draining = false
    /// What a draining client is told last.
    private var farewell = ClientHandler.shuttingDown
    private var closing = false
    /// The watch this client started: it takes no further requests.
    private var watch: WatchSession?
    /// Events written to a watching client while it took none.
    private var unwrittenEvents = 0
    private var readDeadline: Scheduled<Void>?
    private var idleDeadline: Scheduled<Void>?
    private var stallDeadline: Scheduled<Void>?

    init(
        pipeline: RequestPipeline,
        identity: ClientIdentity,
        slot: ClientSlot,
        admission: Admission,
        budget: FrameBudget,
        logger: Logger
    ) {
        let configuration = pipeline.configuration
        self.pipeline = pipeline
        self.identity = identity
        self.slot = slot
        self.admission = admission
        self.budget = budget
        self.logger = logger
        maxFrameSize = configuration.maxFrameSize(identity.socket)
        maxInput = maxFrameSize + configuration.readChunkSize
        maxReadyFrames = configuration.maxRequestsPerTurn
        maxReadyBytes = configuration.readChunkSize
        idleTimeout = TimeAmount.nanoseconds(configuration.idleTimeout.nanoseconds)
        readTimeout = TimeAmount.nanoseconds(configuration.readTimeout.nanoseconds)
        writeTimeout = TimeAmount.nanoseconds(configuration.writeTimeout.nanoseconds)
    }

    func handlerAdded(context: ChannelHandlerContext) {
        armIdle(context)
        // Admitted just as the server began to drain: its drain event went by before this handler was there.
        if admission.isDraining {
            let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            context.eventLoop.execute {
                let (handler, context) = bound.value
                handler.drain(context)
            }
        }
    }

    private func drain(_ context: ChannelHandlerContext) {
        guard !draining else { return }
        draining = true
        pump(context)
    }

    func channelInactive(context: ChannelHandlerContext) {
        closing = true
        watch?.stop()
        for deadline in [readDeadline, idleDeadline, stallDeadline] { deadline?.cancel() }
        ready = []
        reservation = nil
        input = ByteBuffer()
        admission.remove(slot)
        context.fireChannelInactive()
    }

    // MARK: Reading

    func read(context: ChannelHandlerContext) {
        if mayRead(context) {
            context.read()
        } else {
            readHeld = true
        }
    }

    private func mayRead(_ context: ChannelHandlerContext) -> Bool {
        !closing && !inputClosed && framingError == nil && !draining && ready.isEmpty
            && input.readableBytes < maxInput && context.channel.isWritable
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // Copied, so that the receive buffer goes back to NIO's pool for the next read.
        var incoming = unwrapInboundIn(data)
        input.writeBuffer(&incoming)
        cutFrames()
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        pump(context)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case ChannelEvent.inputClosed = event {
            inputClosed = true
            pump(context)
        } else if let event = event as? ClientEvent {
            switch event {
            case .drain:
                drain(context)
            case .evict:
                let evicted = CofferError(
                    .unavailable,
                    "cofferd closed this idle client to admit another; connect again when you need it"
                )
                if turnRunning || !ready.isEmpty {
                    // It sent a whole request after it was chosen: its answers go first, as in a drain.
                    farewell = evicted
                    drain(context)
                } else {
                    // Its place is taken already: a client that does not take the error is closed all the same.
                    finish(context, with: evicted, within: .seconds(1))
                }
            }
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            stallDeadline?.cancel()
            stallDeadline = nil
        } else if stallDeadline == nil {
            let seconds = pipeline.configuration.writeTimeout.wholeSeconds
            stallDeadline = context.eventLoop.assumeIsolated().scheduleTask(in: writeTimeout) {
                self.logger.info(
                    "client closed",
                    metadata: self.metadata([
                        "reason": "it took none of its answers for \(seconds) seconds"
                    ])
                )
                self.close(context)
            }
        }
        pump(context)
        context.fireChannelWritabilityChanged()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        logger.debug("client failed", metadata: metadata(["error": "\(error)"]))
        close(context)
    }

    /// Copies complete frames out of the input while there is room for them; notes a broken length prefix.
    private func cutFrames() {
        while framingError == nil, ready.count < maxReadyFrames, ready.isEmpty || readyBytes < maxReadyBytes {
            switch Framing.header(input.readableBytesView, maxFrameSize: maxFrameSize) {
            case .incomplete:
                return
            case .invalid(let code, let message):
                framingError = CofferError(code, message)
                return
            case .frame(let length, let prefixLength):
                if reservation == nil {
                    guard let granted = budget.reserve(length) else {
                        framingError = CofferError(
                            .resourceExhausted,
                            "cofferd is holding as many large requests as it allows; try again shortly"
                        )
                        return
                    }
                    reservation = granted
                }
                guard input.readableBytes >= prefixLength + length else { return }
                input.moveReaderIndex(forwardBy: prefixLength)
                let bytes = input.readBytes(length: length)!
                ready.append(Frame(bytes: bytes, reservation: reservation!))
                readyBytes += length
                reservation = nil
            }
        }
    }

    // MARK: Turns

    /// Moves the client on: serves the next turn, or ends the client, or reads more, whichever is due.
    private func pump(_ context: ChannelHandlerContext) {
        guard !closing else { return }
        cutFrames()
        if let watch {
            if !ready.isEmpty || framingError != nil {
                watch.end("a connection that watches takes no further requests")
            } else if inputClosed {
                watch.end("the client closed its end")
            } else if draining {
                watch.end("cofferd is stopping; resume from the last revision seen")
            } else if mayRead(context), readHeld {
                readHeld = false
                context.read()
            }
            return
        }
        if input.readableBytes == 0, input.capacity > maxIdleInput {
            // Nothing waits: give a large buffer back rather than hold it while the client is quiet.
            input = ByteBuffer()
        } else if input.readerIndex > 0, input.readableBytes == 0 || input.readerIndex >= input.capacity / 2 {
            input.discardReadBytes()
        }
        if !turnRunning {
            if !ready.isEmpty {
                if context.channel.isWritable || draining || inputClosed { startTurn(context) }
            } else if let framingError {
                finish(context, with: framingError)
                return
            } else if inputClosed {
                finish(
                    context,
                    with: input.readableBytes > 0
                        ? CofferError(.invalidArgument, "the client closed its end in the middle of a frame") : nil
                )
                return
            } else if draining {
                finish(context, with: farewell)
                return
            }
        }
        let reading = mayRead(context)
        if reading, readHeld {
            readHeld = false
            context.read()
        }
        // The read deadline runs only while cofferd waits for the rest of a frame it is reading.
        if reading, input.readableBytes > 0, ready.isEmpty {
            armRead(context)
        } else {
            readDeadline?.cancel()
            readDeadline = nil
        }
        // Busy: serving, or holding whole requests. A client holding only part of a frame is as idle as a quiet
        // one (its last request is when it was last active), and so is a worker that takes none of its answers;
        // an admin's unread answers may acknowledge changes, so it keeps its place until its write deadline.
        slot.busy.store(
            turnRunning || !ready.isEmpty || (identity.socket == .admin && !context.channel.isWritable),
            ordering: .relaxed
        )
    }

    private func startTurn(_ context: ChannelHandlerContext) {
        turnRunning = true
        slot.busy.store(true, ordering: .relaxed)
        let frames = ready.map(\.bytes)
        pipeline.serve(frames, client: identity, on: context.eventLoop).assumeIsolated().whenComplete { result in
            self.turnRunning = false
            guard !self.closing else { return }
            switch result {
            case .success(let turn):
                let served = self.ready.prefix(turn.served)
                self.readyBytes -= served.reduce(0) { $0 + $1.bytes.count }
                self.ready.removeFirst(turn.served)
                if turn.productive { self.slot.markActive() }
                context.writeAndFlush(self.wrapOutboundOut(turn.answers), promise: nil)
                if let spec = turn.watch { self.startWatch(context, spec) }
            case .failure(let error):
                self.logger.error("a turn failed", metadata: self.metadata(["error": "\(error)"]))
                self.close(context)
                return
            }
            self.pump(context)
        }
    }

    /// Follows the watch the last turn started; what the client sent after it ends it.
    private func startWatch(_ context: ChannelHandlerContext, _ spec: WatchSpec) {
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        let maxBacklog = pipeline.configuration.maxWatchBacklog
        let session = WatchSession(
            loop: context.eventLoop,
            pipeline: pipeline,
            hub: pipeline.watches,
            spec: spec,
            identity: identity,
            send: { frame in
                let (handler, context) = bound.value
                guard !handler.closing else { return false }
                context.writeAndFlush(handler.wrapOutboundOut(frame), promise: nil)
                handler.unwrittenEvents = context.channel.isWritable ? 0 : handler.unwrittenEvents + 1
                return handler.unwrittenEvents <= maxBacklog
            },
            close: {
                let (handler, context) = bound.value
                handler.close(context)
            },
            touch: {
                let (handler, _) = bound.value
                handler.slot.markActive()
            }
        )
        watch = session
        slot.markActive()
        session.start()
    }

    /// Writes `error` (if any) after every answer already written, then closes; `within` bounds how long a client
    /// that takes nothing keeps its connection meanwhile.
    private func finish(_ context: ChannelHandlerContext, with error: CofferError?, within: TimeAmount? = nil) {
        guard !closing else { return }
        closing = true
        if let within {
            context.eventLoop.assumeIsolated().scheduleTask(in: within) { context.close(promise: nil) }
        }
        if let error, error.code != .unavailable {
            logger.info("client closed", metadata: metadata(["reason": "\(error.message)"]))
        }
        // Closed only once everything written before has gone to the socket: a close would drop answers still
        // waiting for a client that reads slowly. Writes complete in order, so the last one's completion says so.
        let last = error.map(RequestPipeline.errorFrame) ?? ByteBuffer()
        context.writeAndFlush(wrapOutboundOut(last)).assumeIsolated().whenComplete { _ in
            context.close(promise: nil)
        }
    }

    /// What every client is told last when cofferd drains.
    static let shuttingDown = CofferError(
        .unavailable,
        "cofferd is shutting down: it answered every request it read from this connection; send the others again once it is back"
    )

    private func close(_ context: ChannelHandlerContext) {
        closing = true
        context.close(promise: nil)
    }

    // MARK: Deadlines

    private func armRead(_ context: ChannelHandlerContext) {
        guard readDeadline == nil else { return }
        let seconds = pipeline.configuration.readTimeout.wholeSeconds
        readDeadline = context.eventLoop.assumeIsolated().scheduleTask(in: readTimeout) {
            self.readDeadline = nil
            guard self.framingError == nil else { return }
            self.framingError = CofferError(
                .deadlineExceeded,
                "read timed out: a frame was not completed within \(seconds) seconds"
            )
            self.pump(context)
        }
    }

    /// Starts the idle deadline. A request other than Health pushes it back by updating `slot.lastActive`;
    /// when it fires early it waits out the rest, so that requests need not reschedule it.
    private func armIdle(_ context: ChannelHandlerContext, in delay: TimeAmount? = nil) {
        idleDeadline = context.eventLoop.assumeIsolated().scheduleTask(in: delay ?? idleTimeout) {
            let idle = Int64(NIODeadline.now().uptimeNanoseconds) - self.slot.lastActive.load(ordering: .relaxed)
            if self.turnRunning || idle < self.idleTimeout.nanoseconds {
                self.armIdle(context, in: .nanoseconds(max(self.idleTimeout.nanoseconds - idle, 1_000_000)))
            } else {
                self.close(context)
            }
        }
    }

    private func metadata(_ extra: Logger.Metadata) -> Logger.Metadata {
        extra.merging([
            "socket": "\(identity.socket.rawValue)", "uid": "\(identity.peer.uid)",
            "pid": "\(identity.peer.pid)",
        ]) { a, _ in a }
    }
}

import CofferCore
import CofferWire
import NIOCore

/// Cuts the byte stream into length-delimited frames, refusing a frame whose length prefix is malformed,
/// over the limit, or more than the shared budget for large frames can hold, before anything is allocated
/// for it; and enforcing two deadlines: a frame that was started must be complete within `readTimeout`, and
/// a connection that sends nothing for `idleTimeout` is closed.
final class FrameReader: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = Frame

    private let maxFrameSize: Int
    private let budget: FrameBudget
    /// The budget held for the frame being read.
    private var reservation: FrameReservation?
    private let readTimeout: TimeAmount
    private let idleTimeout: TimeAmount
    private var buffer: ByteBuffer?
    private var failed = false
    private var readDeadline: Scheduled<Void>?
    private var idleDeadline: Scheduled<Void>?

    init(maxFrameSize: Int, budget: FrameBudget, readTimeout: Duration, idleTimeout: Duration) {
        self.maxFrameSize = maxFrameSize
        self.budget = budget
        self.readTimeout = TimeAmount(readTimeout)
        self.idleTimeout = TimeAmount(idleTimeout)
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { armIdle(context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        armIdle(context)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        readDeadline?.cancel()
        idleDeadline?.cancel()
        buffer = nil
        reservation = nil
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !failed else { return }
        var incoming = unwrapInboundIn(data)
        if buffer == nil {
            buffer = incoming
        } else {
            buffer!.writeBuffer(&incoming)
        }
        armIdle(context)
        while var pending = buffer, pending.readableBytes > 0 {
            switch Framing.header(pending.readableBytesView, maxFrameSize: maxFrameSize) {
            case .incomplete:
                armRead(context)
                return
            case .invalid(let code, let message):
                fail(context, CofferError(code, message))
                return
            case .frame(let length, let prefixLength):
                if reservation == nil {
                    guard let granted = budget.reserve(length) else {
                        fail(context, CofferError(.resourceExhausted,
                                                  "cofferd is holding as many large requests as it allows; try again shortly"))
                        return
                    }
                    reservation = granted
                }
                guard pending.readableBytes >= prefixLength + length else {
                    // Grow once to the frame's size rather than by doubling.
                    pending.reserveCapacity(minimumWritableBytes: prefixLength + length - pending.readableBytes)
                    buffer = pending
                    armRead(context)
                    return
                }
                pending.moveReaderIndex(forwardBy: prefixLength)
                let frame = pending.readSlice(length: length)!
                // What follows goes into storage of its own, so that the frame's storage is freed with it.
                buffer = pending.readableBytes > 0 ? ByteBuffer(bytes: pending.readableBytesView) : nil
                readDeadline?.cancel()
                readDeadline = nil
                let out = Frame(bytes: frame, reservation: reservation!)
                reservation = nil
                context.fireChannelRead(wrapInboundOut(out))
            }
        }
        buffer = nil
        readDeadline?.cancel()
        readDeadline = nil
    }

    private func fail(_ context: ChannelHandlerContext, _ error: CofferError) {
        failed = true
        buffer = nil
        reservation = nil
        readDeadline?.cancel()
        context.fireErrorCaught(error)
    }

    private func armRead(_ context: ChannelHandlerContext) {
        guard readDeadline == nil else { return }
        let seconds = readTimeout.nanoseconds / 1_000_000_000
        readDeadline = context.eventLoop.assumeIsolated().scheduleTask(in: readTimeout) { [self] in
            fail(context, CofferError(.deadlineExceeded,
                                      "read timed out: a frame was not completed within \(seconds) seconds"))
        }
    }

    private func armIdle(_ context: ChannelHandlerContext) {
        idleDeadline?.cancel()
        idleDeadline = context.eventLoop.assumeIsolated().scheduleTask(in: idleTimeout) {
            context.close(promise: nil)
        }
    }
}

extension TimeAmount {
    init(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        self = .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }
}

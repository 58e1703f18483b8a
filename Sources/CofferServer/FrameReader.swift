import CofferCore
import CofferWire
import NIOCore

/// Cuts the byte stream into length-delimited frames, refusing a frame whose length prefix is malformed
/// or over the limit before anything is allocated for it, and enforcing two deadlines: a frame that was
/// started must be complete within `readTimeout`, and a connection that sends nothing for `idleTimeout` is
/// closed.
final class FrameReader: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private let maxFrameSize: Int
    private let readTimeout: TimeAmount
    private let idleTimeout: TimeAmount
    private var buffer: ByteBuffer?
    private var failed = false
    private var readDeadline: Scheduled<Void>?
    private var idleDeadline: Scheduled<Void>?

    init(maxFrameSize: Int, readTimeout: Duration, idleTimeout: Duration) {
        self.maxFrameSize = maxFrameSize
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
                guard pending.readableBytes >= prefixLength + length else {
                    armRead(context)
                    return
                }
                pending.moveReaderIndex(forwardBy: prefixLength)
                let frame = pending.readSlice(length: length)!
                buffer = pending.readableBytes > 0 ? pending : nil
                readDeadline?.cancel()
                readDeadline = nil
                context.fireChannelRead(wrapInboundOut(frame))
            }
        }
        buffer = nil
        readDeadline?.cancel()
        readDeadline = nil
    }

    private func fail(_ context: ChannelHandlerContext, _ error: CofferError) {
        failed = true
        buffer = nil
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

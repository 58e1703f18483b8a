import CofferCore
import SwiftProtobuf

/// Protobuf's standard length-delimited framing: a varint byte length, then the message.
public enum Framing {
    /// The largest request frame cofferd reads by default: a connection at its size limits (1 MiB of values)
    /// with its sealing overhead and names fits with room to spare.
    public static let defaultMaxFrameSize = 2 * 1024 * 1024
    /// The largest response frame clients read by default. Responses come from cofferd, which clients trust
    /// more than cofferd trusts them, and a List of many connections can be large.
    public static let defaultMaxResponseFrameSize = 64 * 1024 * 1024
    /// The decoding depth limit for messages read off the wire; Coffer's messages nest four deep at most.
    public static let messageDepthLimit = 16
    /// A varint of a 64-bit length takes at most ten bytes.
    static let maxVarintLength = 10

    /// What the start of a buffer says about the next frame.
    public enum Header: Equatable, Sendable {
        /// Not enough bytes yet to read the length.
        case incomplete
        /// The frame's length and how many bytes its length prefix took.
        case frame(length: Int, prefixLength: Int)
        /// The length prefix is not a valid varint, or says more than `maxFrameSize`.
        case invalid(CofferError.Code, String)
    }

    /// Reads a frame's length prefix from `bytes`, refusing a length over `maxFrameSize` before anything
    /// is allocated for it.
    public static func header(_ bytes: some Collection<UInt8>, maxFrameSize: Int) -> Header {
        var value: UInt64 = 0
        var shift: UInt64 = 0
        var count = 0
        for byte in bytes {
            count += 1
            if count > maxVarintLength {
                return .invalid(.invalidArgument, "malformed frame: the length prefix is not a varint")
            }
            value |= UInt64(byte & 0x7f) << shift
            if value > UInt64(maxFrameSize) {
                return .invalid(
                    .resourceExhausted,
                    "frame too large: the limit is \(maxFrameSize) bytes"
                )
            }
            if byte & 0x80 == 0 {
                return .frame(length: Int(value), prefixLength: count)
            }
            shift += 7
        }
        return .incomplete
    }

    /// The varint encoding of `value`.
    public static func varint(_ value: Int) -> [UInt8] {
        var out: [UInt8] = []
        var rest = UInt64(value)
        repeat {
            var byte = UInt8(rest & 0x7f)
            rest >>= 7
            if rest != 0 { byte |= 0x80 }
            out.append(byte)
        } while rest != 0
        return out
    }

    /// A message framed for the socket.
    public static func frame(_ message: some SwiftProtobuf.Message) throws -> [UInt8] {
        let body: [UInt8] = try message.serializedBytes()
        return varint(body.count) + body
    }

    /// Decodes a frame's body with Coffer's depth limit.
    public static func decode<M: SwiftProtobuf.Message>(
        _ type: M.Type,
        from body: some Collection<UInt8>
    ) throws(CofferError) -> M {
        try decode(type, from: Array(body))
    }

    /// Decodes a frame's body with Coffer's depth limit, without copying it.
    public static func decode<M: SwiftProtobuf.Message>(_ type: M.Type, from body: [UInt8]) throws(CofferError) -> M {
        var options = BinaryDecodingOptions()
        options.messageDepthLimit = messageDepthLimit
        do {
            return try M(serializedBytes: body, options: options)
        } catch {
            throw CofferError(.invalidArgument, "malformed frame: not a \(M.protoMessageName) message", cause: error)
        }
    }
}

import CofferCore
import CofferWire
import Foundation
import SwiftProtobuf
import Testing

@Suite struct FramingTests {
    @Test(arguments: [0, 1, 127, 128, 300, 16_383, 16_384, 4 * 1024 * 1024])
    func varintRoundTrips(length: Int) {
        let prefix = Framing.varint(length)
        #expect(Framing.header(prefix, maxFrameSize: Int.max / 2) == .frame(length: length, prefixLength: prefix.count))
    }

    @Test func matchesSwiftProtobufsDelimitedForm() throws {
        var request = Coffer_V1_Request()
        request.id = 7
        var get = Coffer_V1_GetRequest()
        get.connection = "aws/prod"
        request.get = get
        let stream = OutputStream.toMemory()
        stream.open()
        try BinaryDelimited.serialize(message: request, to: stream)
        stream.close()
        let reference = try #require(stream.property(forKey: .dataWrittenToMemoryStreamKey) as? Data)
        #expect(try Framing.frame(request) == Array(reference))
    }

    @Test func refusesAnOversizedLengthBeforeItArrives() {
        // Only the prefix is here; the refusal must not wait for (or allocate) the body.
        let prefix = Framing.varint(5_000_000)
        guard case .invalid(let code, _) = Framing.header(prefix, maxFrameSize: 4 * 1024 * 1024) else {
            Issue.record("an oversized length was accepted")
            return
        }
        #expect(code == .resourceExhausted)
    }

    @Test func refusesAMalformedVarint() {
        guard case .invalid(let code, _) = Framing.header([UInt8](repeating: 0x80, count: 11), maxFrameSize: .max)
        else {
            Issue.record("an eleven-byte varint was accepted")
            return
        }
        #expect(code == .invalidArgument)
    }

    @Test func waitsForTheRestOfAPrefix() {
        #expect(Framing.header([0x80], maxFrameSize: 1000) == .incomplete)
        #expect(Framing.header([], maxFrameSize: 1000) == .incomplete)
    }

    @Test func decodingRefusesGarbageAndDeepNesting() {
        #expect(throws: CofferError.self) { try Framing.decode(Coffer_V1_Request.self, from: [0xff, 0xff, 0xff]) }
        // A group nested far deeper than any Coffer message: field 1000, start-group, repeated.
        let deep = [UInt8](repeating: 0, count: 0) + Array(repeating: [0xc3, 0x3e], count: 200).flatMap { $0 }
        #expect(throws: CofferError.self) { try Framing.decode(Coffer_V1_Request.self, from: deep) }
    }

    @Test func statusCodesMatchCofferErrors() {
        let error = CofferError(.permissionDenied, "no")
        let status = Coffer_V1_Status(error)
        #expect(status.code == .permissionDenied)
        #expect(status.error?.code == .permissionDenied)
        #expect(Coffer_V1_Status.ok.error == nil)
        for code in [CofferError.Code.invalidArgument, .notFound, .alreadyExists, .unauthenticated, .dataLoss] {
            #expect(Coffer_V1_Code(rawValue: code.rawValue) != nil)
        }
    }
}

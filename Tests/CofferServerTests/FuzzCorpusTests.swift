import CofferServer
import CofferTestSupport
import Foundation
import Testing

/// The fuzzer's regression corpus (Tests/Fuzz/Corpus), replayed through the same decoding the fuzzer drives:
/// every input that once broke something, or that shows a shape worth keeping, must go through without a trap.
@Suite struct FuzzCorpusTests {
    static let corpus = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Fuzz/Corpus")

    @Test func everyCorpusInputIsDecodedWithoutATrap() throws {
        let dir = TemporaryDirectory(prefix: "fuzz")
        let fuzzer = try RequestFuzzer(directory: dir.child("data"))
        let files = try FileManager.default.contentsOfDirectory(atPath: Self.corpus.path).sorted()
        #expect(files.count >= 10)
        var frames: [String: Int] = [:]
        for name in files {
            frames[name] = fuzzer.run(Array(try Data(contentsOf: Self.corpus.appendingPathComponent(name))))
        }
        // The framing of a few known shapes, so that the replay is seen to reach the decoder.
        #expect(frames["every-operation"] == 11)
        #expect(frames["zero-length-frames"] == 4096)
        #expect(frames["oversized-prefix"] == 0)
        #expect(frames["unterminated-varint"] == 0)
    }
}

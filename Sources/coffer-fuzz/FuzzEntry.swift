// The fuzz target for frame and request decoding. Built normally, it replays the files it is given (the
// regression corpus); built by scripts/fuzz.sh with -sanitize=fuzzer and -DFUZZING, libFuzzer drives it.
import CofferServer
import Foundation

private let directory = NSTemporaryDirectory() + "coffer-fuzz-\(getpid())"

private let fuzzer: RequestFuzzer = {
    do {
        return try RequestFuzzer(directory: directory)
    } catch {
        fatalError("coffer-fuzz: cannot make a store in \(directory): \(error)")
    }
}()

#if FUZZING
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    fuzzer.run(data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? [])
    return 0
}

// libFuzzer's entry for a program with a main of its own (SwiftPM names the executable's main itself).
@_silgen_name("LLVMFuzzerRunDriver")
private func runDriver(
    _ argc: UnsafeMutablePointer<CInt>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
) -> CInt

@main
struct Fuzz {
    static func main() {
        var argc = CommandLine.argc
        var argv = CommandLine.unsafeArgv
        exit(runDriver(&argc, &argv) { data, size in fuzzOneInput(data, size) })
    }
}
#else
@main
struct ReplayCorpus {
    static func main() throws {
        let paths = CommandLine.arguments.dropFirst()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        for path in paths {
            let frames = fuzzer.run(Array(try Data(contentsOf: URL(fileURLWithPath: path))))
            print("\(path): \(frames) frame\(frames == 1 ? "" : "s")")
        }
    }
}
#endif

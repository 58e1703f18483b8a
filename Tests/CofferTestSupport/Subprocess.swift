import Foundation

/// The result of running one of the package's binaries to completion.
public struct ProcessResult: Sendable {
    public var status: Int32
    public var stdout: String
    public var stderr: String
}

/// Finds and runs the executables SwiftPM built next to the test bundle.
public enum BuiltProducts {
    /// The build directory: where the test runner's own executable lives.
    public static var directory: String {
        let exe =
            (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        var dir = (exe as NSString).deletingLastPathComponent
        // The test bundle may be inside a `.xctest` folder.
        while dir.hasSuffix(".xctest") || dir.contains(".xctest/") {
            dir = (dir as NSString).deletingLastPathComponent
        }
        return dir
    }

    /// A built product's path; an absolute path is taken as it is.
    public static func path(_ name: String) -> String {
        name.hasPrefix("/") ? name : (directory as NSString).appendingPathComponent(name)
    }

    /// Runs `name` with `arguments`, feeding `stdin`, and waits for it to exit.
    public static func run(
        _ name: String,
        _ arguments: [String],
        stdin: [UInt8] = [],
        environment: [String: String]? = nil
    ) throws -> ProcessResult {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path(name))
        process.arguments = arguments
        if let environment { process.environment = environment }
        let input = Pipe()
        let output = Pipe()
        let errors = Pipe()
        process.standardInput = input
        process.standardOutput = output
        process.standardError = errors
        try process.run()
        input.fileHandleForWriting.write(Data(stdin))
        try input.fileHandleForWriting.close()
        // Read both pipes before waiting, so a chatty child cannot block on a full pipe.
        let errorData = DataBox()
        let group = DispatchGroup()
        DispatchQueue.global().async(group: group) {
            errorData.data = errors.fileHandleForReading.readDataToEndOfFile()
        }
        let outputData = output.fileHandleForReading.readDataToEndOfFile()
        group.wait()
        process.waitUntilExit()
        return ProcessResult(
            status: process.terminationStatus,
            stdout: String(decoding: outputData, as: UTF8.self),
            stderr: String(decoding: errorData.data, as: UTF8.self)
        )
    }
}

/// Written by one reader thread, read after it is joined.
private final class DataBox: @unchecked Sendable {
    var data = Data()
}

import CofferWire
import Foundation

/// The real cofferd binary serving a temporary data directory on temporary sockets. Its stdout and stderr
/// go to files, so a test can read everything it printed.
public final class CofferdProcess: @unchecked Sendable {
    public let dir: TemporaryDirectory
    public let dataDirectory: String
    public let adminSocket: String
    public let workerSocket: String
    public let process = Process()
    private let logPath: String

    /// Starts `cofferd serve --init-if-missing` and waits until both sockets accept connections.
    public init(
        dir: TemporaryDirectory = TemporaryDirectory(prefix: "cofferd"),
        name: String = "cofferd",
        dataDirectory: String? = nil,
        arguments: [String] = [],
        waitUntilServing: Bool = true
    ) throws {
        self.dir = dir
        self.dataDirectory = dataDirectory ?? dir.child("data")
        adminSocket = dir.child("\(name)-admin.sock")
        workerSocket = dir.child("\(name)-worker.sock")
        logPath = dir.child("\(name).log")
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        process.executableURL = URL(fileURLWithPath: BuiltProducts.path("cofferd"))
        process.arguments =
            [
                "serve", "--data-dir", self.dataDirectory, "--init-if-missing",
                "--admin-socket", adminSocket, "--worker-socket", workerSocket,
            ] + arguments
        process.standardOutput = log
        process.standardError = log
        process.standardInput = FileHandle.nullDevice
        try process.run()
        if waitUntilServing { try self.waitUntilServing() }
    }

    deinit {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }

    /// Waits until both sockets accept connections, or throws if cofferd exits or takes over ten seconds.
    public func waitUntilServing() throws {
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            guard process.isRunning else { throw Failure("cofferd exited early: \(output)") }
            if UnixSocket.accepts(adminSocket) && UnixSocket.accepts(workerSocket) { return }
            usleep(20_000)
        }
        throw Failure("cofferd did not start serving: \(output)")
    }

    /// Sends `signal` and waits up to `timeout` seconds for cofferd to exit; returns its status, or nil if it
    /// was still running (it is then killed).
    @discardableResult
    public func stop(signal: Int32 = SIGTERM, timeout: TimeInterval = 15) -> Int32? {
        guard process.isRunning else { return process.terminationStatus }
        kill(process.processIdentifier, signal)
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        guard !process.isRunning else {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            return nil
        }
        process.waitUntilExit()
        return process.terminationStatus
    }

    /// Waits for cofferd to exit by itself; its status, or nil if it was still running after `timeout`.
    public func waitForExit(timeout: TimeInterval = 15) -> Int32? {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        return process.isRunning ? nil : process.terminationStatus
    }

    /// Everything cofferd printed so far.
    public var output: String {
        (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
    }

    /// Runs the coffer CLI against this cofferd's sockets.
    public func coffer(_ arguments: [String], stdin: String = "", token: String? = nil) throws -> ProcessResult {
        var environment = ProcessInfo.processInfo.environment
        environment["COFFER_ADMIN_SOCKET"] = adminSocket
        environment["COFFER_WORKER_SOCKET"] = workerSocket
        environment["COFFER_TOKEN"] = token
        return try BuiltProducts.run("coffer", arguments, stdin: Array(stdin.utf8), environment: environment)
    }

    public struct Failure: Error, CustomStringConvertible {
        public let description: String
        init(_ description: String) { self.description = description }
    }
}

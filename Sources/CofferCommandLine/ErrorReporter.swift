import ArgumentParser
import CofferCore
import Foundation

/// How Coffer's command lines report a failure, in the voice of `age`: `TOOL: error: MESSAGE`, perhaps a
/// `TOOL: hint: ...`, and the exit status of the failure's kind (`ExitStatus`). Both `coffer` and `cofferd`
/// report through it.
public struct ErrorReporter: Sendable {
    public let tool: String
    private let hint: @Sendable (CofferError) -> String?

    public init(tool: String, hint: @escaping @Sendable (CofferError) -> String? = { _ in nil }) {
        self.tool = tool
        self.hint = hint
    }

    /// Runs `body`, reporting a Coffer error it throws; anything else goes to ArgumentParser as it is.
    public func run(_ body: () throws -> Void) throws {
        do {
            try body()
        } catch let error as CofferError {
            throw report(error)
        }
    }

    /// The same for an asynchronous body.
    public func runAsync(_ body: () async throws -> Void) async throws {
        do {
            try await body()
        } catch let error as CofferError {
            throw report(error)
        }
    }

    /// Prints `error` to stderr and returns the exit to leave with.
    public func report(_ error: CofferError) -> ExitCode {
        var text = "\(tool): error: \(error.message)\n"
        if let hint = hint(error) { text += "\(tool): hint: \(hint)\n" }
        FileHandle.standardError.write(Data(text.utf8))
        return ExitCode(error.code.exitStatus)
    }

    /// The sentence about exit statuses for a tool's help.
    public static var exitStatusHelp: String { "Exit status: \(ExitStatus.summary)." }
}

/// A duration written as seconds or with a unit: `90`, `90s`, `15m`, `1h`, `7d`, `500ms`; nil when malformed or
/// not positive.
public func parseDuration(_ text: String) -> Duration? {
    if text.hasSuffix("ms") {
        guard let n = Int64(text.dropLast(2)), n > 0 else { return nil }
        return .milliseconds(n)
    }
    let units: [Character: Int64] = ["s": 1, "m": 60, "h": 3600, "d": 86400]
    var number = Substring(text)
    var unit: Int64 = 1
    if let last = text.last, let scale = units[last] {
        number = number.dropLast()
        unit = scale
    }
    guard let n = Int64(number), n > 0 else { return nil }
    let (seconds, overflow) = n.multipliedReportingOverflow(by: unit)
    return overflow ? nil : .seconds(seconds)
}

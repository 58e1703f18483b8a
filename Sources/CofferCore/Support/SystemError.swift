#if canImport(Glibc)
import Glibc
#endif

/// An errno value with the system's message for it, for error messages and logs.
public struct SystemError: Error, Sendable, Equatable, CustomStringConvertible {
    public let code: Int32

    public init(_ code: Int32) { self.code = code }

    /// The calling thread's errno now.
    public static var current: SystemError { SystemError(errno) }

    /// The system's message: "No space left on device".
    public var description: String { String(cString: strerror(code)) }
}

/// The exit statuses of Coffer's command-line tools, one per kind of failure, so that scripts can tell a
/// missing connection from a refused token. The only copy of the table: the tools' help, their error
/// reporter and the README's sentence all come from it.
public enum ExitStatus {
    /// Any failure the table does not name.
    public static let other: Int32 = 1
    /// A command line that could not be parsed.
    public static let usage: Int32 = 64

    /// The status code each exit status stands for, in exit-status order.
    public static let table: [(status: Int32, code: StatusCode)] = [
        (2, .invalidArgument), (3, .notFound), (4, .alreadyExists), (5, .permissionDenied),
        (6, .unauthenticated), (7, .failedPrecondition), (8, .resourceExhausted), (9, .unavailable),
        (10, .dataLoss), (11, .deadlineExceeded),
    ]

    /// The exit status for a failure of this kind.
    public static func of(_ code: StatusCode) -> Int32 {
        table.first { $0.code == code }?.status ?? other
    }

    /// The table as one line for a tool's help: "0 ok, 2 invalid argument, ..., 1 other, 64 usage".
    public static var summary: String {
        (["0 ok"] + table.map { "\($0.status) \($0.code)" } + ["\(other) other", "\(usage) usage"])
            .joined(separator: ", ")
    }
}

extension StatusCode {
    /// The exit status the command-line tools use for this kind of failure.
    public var exitStatus: Int32 { ExitStatus.of(self) }
}

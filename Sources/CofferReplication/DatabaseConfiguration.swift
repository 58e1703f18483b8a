import CofferCore
import Foundation

/// Where a cluster's database is: never its password in argv (a file or the environment gives that).
public struct DatabaseConfiguration: Sendable {
    public var host: String
    public var port: Int
    public var user: String
    public var database: String
    public var password: String?
    /// How long a connection attempt may take before the database counts as unreachable.
    public var connectTimeout: Duration = .seconds(2)

    public init(host: String, port: Int, user: String, database: String, password: String?) {
        self.host = host
        self.port = port
        self.user = user
        self.database = database
        self.password = password
    }

    /// `postgres://USER@HOST[:PORT]/DATABASE`; a password in it is refused (it would be in argv).
    public init(url: String, password: String?) throws(CofferError) {
        guard let components = URLComponents(string: url), ["postgres", "postgresql"].contains(components.scheme),
            let host = components.host, !host.isEmpty, let user = components.user, !user.isEmpty
        else {
            throw CofferError(.invalidArgument, "--cluster takes postgres://USER@HOST[:PORT]/DATABASE")
        }
        guard components.password == nil else {
            throw CofferError(
                .invalidArgument,
                "--cluster must not hold the password: give it in --database-password-file or COFFER_DATABASE_PASSWORD"
            )
        }
        let database = String(components.path.drop { $0 == "/" })
        self.init(
            host: host,
            port: components.port ?? 5432,
            user: user,
            database: database.isEmpty ? user : database,
            password: password
        )
    }

    public var description: String { "postgres://\(user)@\(host):\(port)/\(database)" }
}

import CofferCore
import CofferStore
import Foundation
import Logging
import NIOCore
import NIOPosix
import PostgresNIO

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

/// The replication log in PostgreSQL. `coffer_log` holds the batches under their first revision; the one row
/// of `coffer_head` holds the newest revision and is locked by each append, which is how two nodes writing
/// at once are put in order: the second finds the head moved and catches up first. A NOTIFY on `coffer_log`
/// tells the other nodes. Nothing here is trusted for integrity: the nodes check every batch's link.
public final class PostgresLog: ReplicationLog, @unchecked Sendable {
    public let configuration: DatabaseConfiguration
    private let group: any EventLoopGroup
    private let logger: Logger
    // Guards `connection`; one query at a time on it.
    private let lock = NSLock()
    private var connection: PostgresConnection?

    public static let channel = "coffer_log"

    public init(_ configuration: DatabaseConfiguration, group: any EventLoopGroup, logger: Logger) {
        self.configuration = configuration
        self.group = group
        self.logger = logger
    }

    public func append(_ entry: ReplicationEntry) throws {
        try withConnection { connection in
            _ = try connection.query("BEGIN", logger: logger).wait()
            do {
                let head = try Self.head(of: connection, logger: logger, locking: true)
                if head > entry.first - 1 {
                    _ = try? connection.query("ROLLBACK", logger: logger).wait()
                    throw ReplicationBehind(head: head)
                }
                if head < entry.first - 1 {
                    _ = try? connection.query("ROLLBACK", logger: logger).wait()
                    throw CofferError(
                        .dataLoss,
                        "the cluster's log ends at revision \(head), before this node's \(entry.first - 1): it was rolled back or emptied; no write is taken"
                    )
                }
                let first = Int64(entry.first)
                let last = Int64(entry.last)
                let batch = ByteBuffer(bytes: entry.batch)
                let link = ByteBuffer(bytes: entry.link)
                _ = try connection.query(
                    "INSERT INTO coffer_log (first_revision, last_revision, batch, link) VALUES (\(first), \(last), \(batch), \(link))",
                    logger: logger
                ).wait()
                _ = try connection.query("UPDATE coffer_head SET revision = \(last) WHERE id = 1", logger: logger)
                    .wait()
                _ = try connection.query("SELECT pg_notify('coffer_log', \(String(entry.last)))", logger: logger).wait()
                _ = try connection.query("COMMIT", logger: logger).wait()
            } catch {
                _ = try? connection.query("ROLLBACK", logger: logger).wait()
                throw error
            }
        }
    }

    public func entries(after revision: UInt64, limit: Int) throws -> [ReplicationEntry] {
        try withConnection { connection in
            let after = Int64(revision)
            let count = Int64(limit)
            let result = try connection.query(
                "SELECT first_revision, last_revision, batch, link FROM coffer_log WHERE first_revision > \(after) ORDER BY first_revision LIMIT \(count)",
                logger: logger
            ).wait()
            return try result.rows.map { row in
                let (first, last, batch, link) = try row.decode((Int64, Int64, ByteBuffer, ByteBuffer).self)
                return ReplicationEntry(
                    first: UInt64(max(first, 0)),
                    last: UInt64(max(last, 0)),
                    batch: Array(batch.readableBytesView),
                    link: Array(link.readableBytesView)
                )
            }
        }
    }

    /// The newest revision the log holds.
    public func head() throws -> UInt64 {
        try withConnection { connection in try Self.head(of: connection, logger: logger, locking: false) }
    }

    /// A second connection that LISTENs on the log's channel and calls `notified` on each NOTIFY (on an event
    /// loop: keep it short). Closed with the returned connection.
    public func listen(_ notified: @escaping @Sendable () -> Void) throws -> PostgresConnection {
        let connection = try connect()
        connection.addListener(channel: Self.channel) { _, _ in notified() }
        do {
            _ = try connection.query("LISTEN coffer_log", logger: logger).wait()
        } catch {
            _ = try? connection.close().wait()
            throw unreachable(error)
        }
        return connection
    }

    public func close() {
        lock.withLock {
            _ = try? connection?.close().wait()
            connection = nil
        }
    }

    // MARK: Connections

    private func withConnection<R>(_ body: (PostgresConnection) throws -> R) throws -> R {
        lock.lock()
        defer { lock.unlock() }
        let connection: PostgresConnection
        if let open = self.connection, !open.isClosed {
            connection = open
        } else {
            connection = try connect()
            do {
                try Self.createSchema(connection, logger: logger)
            } catch {
                _ = try? connection.close().wait()
                throw unreachable(error)
            }
            self.connection = connection
        }
        do {
            return try body(connection)
        } catch let error as ReplicationBehind {
            throw error
        } catch let error as CofferError {
            throw error
        } catch {
            if connection.isClosed { self.connection = nil }
            throw unreachable(error)
        }
    }

    private func connect() throws -> PostgresConnection {
        var options = PostgresConnection.Configuration.Options()
        options.connectTimeout = .nanoseconds(Int64(configuration.connectTimeout.nanoseconds))
        var postgres = PostgresConnection.Configuration(
            host: configuration.host,
            port: configuration.port,
            username: configuration.user,
            password: configuration.password,
            database: configuration.database,
            tls: .disable
        )
        postgres.options = options
        do {
            return try PostgresConnection.connect(on: group.next(), configuration: postgres, id: 1, logger: logger)
                .wait()
        } catch {
            throw unreachable(error)
        }
    }

    private func unreachable(_ error: any Error) -> CofferError {
        let detail =
            (error as? PSQLError).map { psql in
                psql.serverInfo?[.message] ?? "\(psql.code)" + (psql.underlying.map { " (\($0))" } ?? "")
            } ?? "\(error)"
        return CofferError(
            .unavailable,
            "the cluster's database \(configuration.description) cannot be used: \(detail)"
        )
    }

    private static func head(of connection: PostgresConnection, logger: Logger, locking: Bool) throws -> UInt64 {
        let query: PostgresQuery =
            locking
            ? "SELECT revision FROM coffer_head WHERE id = 1 FOR UPDATE"
            : "SELECT revision FROM coffer_head WHERE id = 1"
        let result = try connection.query(query, logger: logger).wait()
        guard let row = result.rows.first else {
            throw CofferError(.dataLoss, "the cluster's database has lost its head row: it was altered")
        }
        return UInt64(max(try row.decode(Int64.self), 0))
    }

    /// Creates the tables when they are missing (the first node to start makes them; an advisory lock keeps
    /// two nodes starting at once from racing).
    private static func createSchema(_ connection: PostgresConnection, logger: Logger) throws {
        _ = try connection.query("BEGIN", logger: logger).wait()
        do {
            try createTables(connection, logger: logger)
            _ = try connection.query("COMMIT", logger: logger).wait()
        } catch {
            _ = try? connection.query("ROLLBACK", logger: logger).wait()
            throw error
        }
    }

    private static func createTables(_ connection: PostgresConnection, logger: Logger) throws {
        _ = try connection.query("SELECT pg_advisory_xact_lock(72736465)", logger: logger).wait()
        _ = try connection.query(
            """
            CREATE TABLE IF NOT EXISTS coffer_log (
              first_revision bigint PRIMARY KEY,
              last_revision bigint NOT NULL,
              batch bytea NOT NULL,
              link bytea NOT NULL
            )
            """,
            logger: logger
        ).wait()
        _ = try connection.query(
            "CREATE TABLE IF NOT EXISTS coffer_head (id int PRIMARY KEY CHECK (id = 1), revision bigint NOT NULL)",
            logger: logger
        ).wait()
        _ = try connection.query(
            "INSERT INTO coffer_head (id, revision) VALUES (1, 0) ON CONFLICT (id) DO NOTHING",
            logger: logger
        ).wait()
    }
}

import CofferCore
import CofferStore
import Foundation
import Logging
import NIOCore
import PostgresNIO
import Synchronization

/// The replication log in PostgreSQL. `coffer_log` holds the batches under their first revision; the one row
/// of `coffer_head` holds the newest revision. An append is one call of `coffer_append_v1`, which locks the head,
/// checks that the log ends where the appending node does (revision and link), inserts the batch, moves the
/// head and notifies `coffer_log`, in one transaction and one round trip: two nodes writing at once are put in
/// order, and the second finds the head moved and catches up first. A read takes the head and the entries after
/// a revision in one statement, so one snapshot. Nothing here is trusted for integrity: the nodes check every
/// batch's link.
///
/// Each use of the database abandons its query and closes its connection when its task is cancelled (the
/// caller's deadline), so a database that stops answering never holds a caller; the next use connects again.
public final class PostgresLog: ReplicationLog, Sendable {
    public let configuration: DatabaseConfiguration
    private let group: any EventLoopGroup
    private let logger: Logger
    /// One connection for appends (the writer), one for reads (the follower and a writer catching up).
    private let writes: DatabaseConnection
    private let reads: DatabaseConnection

    public static let channel = "coffer_log"

    public init(_ configuration: DatabaseConfiguration, group: any EventLoopGroup, logger: Logger) {
        self.configuration = configuration
        self.group = group
        self.logger = logger
        writes = DatabaseConnection(configuration, group: group, logger: logger, id: 1)
        reads = DatabaseConnection(configuration, group: group, logger: logger, id: 2)
    }

    public func append(_ entry: ReplicationEntry, after position: LogPosition) async throws {
        let first = Int64(entry.first)
        let last = Int64(entry.last)
        let batch = ByteBuffer(bytes: entry.batch)
        let link = ByteBuffer(bytes: entry.link)
        let previous = ByteBuffer(bytes: position.link)
        let (outcome, head) = try await writes.use { connection, logger in
            let rows = try await connection.query(
                "SELECT outcome, head FROM coffer_append_v1(\(first), \(last), \(batch), \(link), \(previous))",
                logger: logger
            ).collect()
            guard let row = rows.first else { throw CofferError(.internal, "coffer_append_v1 answered nothing") }
            let (outcome, head) = try row.decode((String, Int64).self)
            return (outcome, UInt64(max(head, 0)))
        }
        switch outcome {
        case "appended": return
        case "behind": throw LogRefusal.behind(head: head)
        case "rolled-back": throw LogRefusal.rolledBack(head: head)
        case "diverged": throw LogRefusal.diverged(at: head)
        case "missing-head": throw LogRefusal.missingHead(head: head)
        default:
            throw CofferError(.dataLoss, "the cluster's database has lost its head row: it was altered")
        }
    }

    public func read(after revision: UInt64, limit: Int) async throws -> LogSlice {
        let after = Int64(revision)
        let count = Int64(max(limit, 0))
        return try await reads.use { connection, logger in
            let rows = try await connection.query(
                """
                SELECT h.revision, hl.link, l.first_revision, l.last_revision, l.batch, l.link
                FROM coffer_head h
                LEFT JOIN coffer_log hl ON hl.last_revision = h.revision
                LEFT JOIN LATERAL (
                  SELECT first_revision, last_revision, batch, link FROM coffer_log
                  WHERE first_revision > \(after) ORDER BY first_revision LIMIT \(count)
                ) l ON true
                WHERE h.id = 1
                ORDER BY l.first_revision
                """,
                logger: logger
            ).collect()
            guard let first = rows.first else {
                throw CofferError(.dataLoss, "the cluster's database has lost its head row: it was altered")
            }
            let (head, headLink, _, _, _, _) = try first.decode(
                (Int64, ByteBuffer?, Int64?, Int64?, ByteBuffer?, ByteBuffer?).self
            )
            var entries: [ReplicationEntry] = []
            for row in rows {
                let (_, _, first, last, batch, link) = try row.decode(
                    (Int64, ByteBuffer?, Int64?, Int64?, ByteBuffer?, ByteBuffer?).self
                )
                guard let first, let last, let batch, let link else { continue }
                entries.append(
                    ReplicationEntry(
                        first: UInt64(max(first, 0)),
                        last: UInt64(max(last, 0)),
                        batch: Array(batch.readableBytesView),
                        link: Array(link.readableBytesView)
                    )
                )
            }
            return LogSlice(
                head: UInt64(max(head, 0)),
                headLink: headLink.map { Array($0.readableBytesView) },
                entries: entries
            )
        }
    }

    public func follow(_ notified: @escaping @Sendable (UInt64) -> Void) async throws {
        let listener = DatabaseConnection(configuration, group: group, logger: logger, id: 3)
        defer { listener.close() }
        try await listener.use { connection, _ in
            try await connection.listen(on: Self.channel) { notifications in
                for try await notification in notifications {
                    notified(UInt64(notification.payload) ?? 0)
                }
            }
        }
        throw CofferError(.unavailable, "the cluster's database ended its notifications")
    }

    public func close() {
        writes.close()
        reads.close()
    }

    /// Creates the tables, the index and the append function when they are missing (the first node to start
    /// makes them; an advisory lock keeps two nodes starting at once from racing).
    static func createSchema(_ connection: PostgresConnection, logger: Logger) async throws {
        try await connection.query("BEGIN", logger: logger)
        do {
            try await connection.query("SELECT pg_advisory_xact_lock(72736465)", logger: logger)
            try await connection.query(
                """
                CREATE TABLE IF NOT EXISTS coffer_log (
                  first_revision bigint PRIMARY KEY,
                  last_revision bigint NOT NULL,
                  batch bytea NOT NULL,
                  link bytea NOT NULL
                )
                """,
                logger: logger
            )
            try await connection.query(
                "CREATE INDEX IF NOT EXISTS coffer_log_last_revision ON coffer_log (last_revision)",
                logger: logger
            )
            try await connection.query(
                "CREATE TABLE IF NOT EXISTS coffer_head (id int PRIMARY KEY CHECK (id = 1), revision bigint NOT NULL)",
                logger: logger
            )
            try await connection.query(
                "INSERT INTO coffer_head (id, revision) VALUES (1, 0) ON CONFLICT (id) DO NOTHING",
                logger: logger
            )
            try await connection.query(PostgresQuery(unsafeSQL: appendFunction), logger: logger)
            try await connection.query("COMMIT", logger: logger)
        } catch {
            _ = try? await connection.query("ROLLBACK", logger: logger)
            throw error
        }
    }

    /// The append, as one function: checked against the head (revision and the link of the batch that holds
    /// it) under the head's row lock, so that it takes one round trip and one transaction.
    private static let appendFunction = """
        CREATE OR REPLACE FUNCTION coffer_append_v1(
          p_first bigint, p_last bigint, p_batch bytea, p_link bytea, p_previous bytea
        ) RETURNS TABLE (outcome text, head bigint) LANGUAGE plpgsql AS $$
        DECLARE
          current_head bigint;
          head_link bytea;
        BEGIN
          SELECT revision INTO current_head FROM coffer_head WHERE id = 1 FOR UPDATE;
          IF NOT FOUND THEN
            RETURN QUERY SELECT 'no-head'::text, 0::bigint;
            RETURN;
          END IF;
          IF current_head > p_first - 1 THEN
            RETURN QUERY SELECT 'behind'::text, current_head;
            RETURN;
          END IF;
          IF current_head < p_first - 1 THEN
            RETURN QUERY SELECT 'rolled-back'::text, current_head;
            RETURN;
          END IF;
          IF current_head > 0 THEN
            SELECT link INTO head_link FROM coffer_log WHERE last_revision = current_head;
            IF NOT FOUND THEN
              RETURN QUERY SELECT 'missing-head'::text, current_head;
              RETURN;
            END IF;
            IF head_link <> p_previous THEN
              RETURN QUERY SELECT 'diverged'::text, current_head;
              RETURN;
            END IF;
          END IF;
          INSERT INTO coffer_log (first_revision, last_revision, batch, link) VALUES (p_first, p_last, p_batch, p_link);
          UPDATE coffer_head SET revision = p_last WHERE id = 1;
          PERFORM pg_notify('coffer_log', p_last::text);
          RETURN QUERY SELECT 'appended'::text, p_last;
        END
        $$
        """
}

/// One connection to the cluster's database, made when first used (with the schema checked) and made again
/// after it fails. A use whose task is cancelled closes it, which ends the query in flight at once.
final class DatabaseConnection: Sendable {
    private let configuration: DatabaseConfiguration
    private let group: any EventLoopGroup
    private let logger: Logger
    private let id: Int
    private let current = Mutex<PostgresConnection?>(nil)

    init(_ configuration: DatabaseConfiguration, group: any EventLoopGroup, logger: Logger, id: Int) {
        self.configuration = configuration
        self.group = group
        self.logger = logger
        self.id = id
    }

    func use<R: Sendable>(_ body: (PostgresConnection, Logger) async throws -> R) async throws -> R {
        let connection = try await connected()
        do {
            return try await withTaskCancellationHandler {
                try await body(connection, logger)
            } onCancel: {
                Self.shut(connection)
            }
        } catch let refusal as LogRefusal {
            throw refusal
        } catch let error as CofferError {
            throw error
        } catch {
            // A connection that failed a query, or was closed by a deadline, is not used again.
            discard(connection)
            if Task.isCancelled { throw CancellationError() }
            throw unreachable(error)
        }
    }

    func close() {
        let connection = current.withLock { connection in
            defer { connection = nil }
            return connection
        }
        connection.map(Self.shut)
    }

    private func discard(_ connection: PostgresConnection) {
        current.withLock { if $0 === connection { $0 = nil } }
        Self.shut(connection)
    }

    private func connected() async throws -> PostgresConnection {
        if let open = current.withLock({ $0 }), !open.isClosed { return open }
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
        let connection: PostgresConnection
        do {
            connection = try await PostgresConnection.connect(
                on: group.next(),
                configuration: postgres,
                id: id,
                logger: logger
            )
        } catch {
            if Task.isCancelled { throw CancellationError() }
            throw unreachable(error)
        }
        do {
            try await withTaskCancellationHandler {
                try await PostgresLog.createSchema(connection, logger: logger)
            } onCancel: {
                Self.shut(connection)
            }
        } catch {
            Self.shut(connection)
            if Task.isCancelled { throw CancellationError() }
            throw unreachable(error)
        }
        // Another use may have connected meanwhile: keep the one already in place, which may be running a query.
        let existing = current.withLock { slot -> PostgresConnection? in
            if let open = slot, !open.isClosed { return open }
            slot = connection
            return nil
        }
        guard let existing else { return connection }
        Self.shut(connection)
        return existing
    }

    /// Closes `connection`, keeping it alive until it has (PostgresNIO requires a connection closed before it
    /// goes).
    private static func shut(_ connection: PostgresConnection) {
        connection.close().whenComplete { _ in withExtendedLifetime(connection) {} }
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
}

import ArgumentParser
import CofferCommandLine
import CofferConnections
import CofferCore
import CofferCrypto
import CofferReplication
import CofferServer
import CofferStore
import CofferWire
import Foundation
import Logging
import NIOPosix
import ServiceLifecycle

extension Cofferd {
    struct Serve: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Serve the admin and worker sockets until SIGTERM, SIGINT or SIGHUP.",
            discussion: "On any of them cofferd stops reading, answers every request it has read, and stops."
        )

        /// Where every option's default comes from.
        private static let defaults = ServerConfiguration(
            adminSocket: SocketConfiguration(path: CofferDefaults.adminSocket, mode: 0o600),
            workerSocket: SocketConfiguration(path: CofferDefaults.workerSocket, mode: 0o660)
        )

        @OptionGroup var data: DataOptions

        @Flag(
            name: .customLong("init-if-missing"),
            help: "Create the data directory, key and store on first start (the embedded default)."
        )
        var initIfMissing = false

        @Option(name: .customLong("admin-socket"), help: "The admin socket's path.")
        var adminSocket: String = defaults.adminSocket.path

        @Option(name: .customLong("admin-socket-mode"), help: "The admin socket's mode: 0600 or 0660.")
        var adminSocketMode: String = "0" + String(defaults.adminSocket.mode, radix: 8)

        @Option(name: .customLong("admin-socket-group"), help: "Give the admin socket this group (a name or gid).")
        var adminSocketGroup: String?

        @Option(
            name: .customLong("admin-uid"),
            help: "A uid allowed on the admin socket; repeat for several. Default: cofferd's own uid and root."
        )
        var adminUIDs: [UInt32] = []

        @Option(name: .customLong("worker-socket"), help: "The worker socket's path.")
        var workerSocket: String = defaults.workerSocket.path

        @Option(name: .customLong("worker-socket-mode"), help: "The worker socket's mode, in octal, at most 0660.")
        var workerSocketMode: String = "0" + String(defaults.workerSocket.mode, radix: 8)

        @Option(name: .customLong("worker-socket-group"), help: "Give the worker socket this group (a name or gid).")
        var workerSocketGroup: String?

        @Option(
            name: .customLong("worker-uid"),
            help: "Allow only these uids (and --worker-gid's) on the worker socket; repeat for several."
        )
        var workerUIDs: [UInt32] = []

        @Option(
            name: .customLong("worker-gid"),
            help: "Allow only clients whose primary gid is one of these (and --worker-uid's) on the worker socket."
        )
        var workerGIDs: [UInt32] = []

        @Option(name: .customLong("max-admin-clients"), help: "The most clients served at once on the admin socket.")
        var maxAdminClients: Int = defaults.maxAdminClients

        @Option(
            name: .customLong("max-worker-clients"),
            help:
                "The most clients served at once on the worker socket; when full, the one idle the longest makes room."
        )
        var maxWorkerClients: Int = defaults.maxWorkerClients

        @Option(name: .customLong("max-worker-clients-per-uid"), help: "The most worker-socket clients of one uid.")
        var maxWorkerClientsPerUID: Int = defaults.maxWorkerClientsPerUID

        @Option(name: .customLong("max-frame-size"), help: "The largest frame read on the admin socket, in bytes.")
        var maxFrameSize: Int = defaults.maxFrameSize

        @Option(
            name: .customLong("idle-timeout"),
            help: "Close a client that makes no request but Health for this many seconds."
        )
        var idleTimeout: Int = Int(defaults.idleTimeout.wholeSeconds)

        @Option(
            name: .customLong("read-timeout"),
            help: "Close a client whose frame is not complete within this many seconds."
        )
        var readTimeout: Int = Int(defaults.readTimeout.wholeSeconds)

        @Option(
            name: .customLong("write-timeout"),
            help: "Close a client that takes none of its answers for this many seconds."
        )
        var writeTimeout: Int = Int(defaults.writeTimeout.wholeSeconds)

        @Option(
            name: .customLong("shutdown-grace"),
            help: "On SIGTERM, give clients this many seconds to take their answers."
        )
        var shutdownGrace: Int = Int(defaults.shutdownGrace.wholeSeconds)

        @Option(
            name: .customLong("sealed-key-grace"),
            help: "After a key rotation, take values sealed to the previous key for this many seconds."
        )
        var sealedKeyGrace: Int = Int(StoreConfiguration.defaultSealedKeyGrace.wholeSeconds)

        @Option(name: .customLong("max-watches"), help: "The most watches open at once on the worker socket.")
        var maxWatches: Int = defaults.maxWatches

        @Option(name: .customLong("max-watches-per-token"), help: "The most watches one token may have open.")
        var maxWatchesPerToken: Int = defaults.maxWatchesPerToken

        @Option(name: .customLong("watch-heartbeat"), help: "Seconds between a quiet watch's heartbeats.")
        var watchHeartbeat: Int = Int(defaults.watchHeartbeat.wholeSeconds)

        @Option(
            name: .customLong("max-changes"),
            help: "Changes the change feed keeps; a watch resuming from before the oldest is told to start over."
        )
        var maxChanges: Int = StoreLimits().maxChangeRecords

        @Option(
            name: .customLong("metrics-address"),
            help: "Serve metrics in Prometheus's text format at http://HOST:PORT/metrics (off by default)."
        )
        var metricsAddress: String?

        @Option(
            name: .customLong("cluster"),
            help: "Join a cluster through its PostgreSQL database: postgres://USER@HOST[:PORT]/DATABASE (no password)."
        )
        var cluster: String?

        @Option(
            name: .customLong("database-password-file"),
            help: "A file holding the cluster database's password (else COFFER_DATABASE_PASSWORD)."
        )
        var databasePasswordFile: String?

        @Option(
            name: .customLong("stale-after"),
            help: "In a cluster: seconds a node serves values without reaching the database before it refuses them."
        )
        var staleAfter: Int = 86_400

        @Option(
            name: .customLong("max-lag"),
            help:
                "In a cluster: how long a node that knows the log holds changes it has not applied still serves values (500ms, 1s, ...)."
        )
        var maxLag: String = "1s"

        @Option(
            name: .customLong("write-deadline"),
            help:
                "In a cluster: how long a write may wait for the cluster's database before it is answered UNAVAILABLE (2s, 500ms, ...)."
        )
        var writeDeadline: String = "2s"

        @Option(
            name: .customLong("types"),
            help:
                "A JSON file declaring further connection types ({\"types\": [...]}, as coffer types --json prints them)."
        )
        var typesFile: String?

        @Option(name: .customLong("event-loops"), help: "Threads that serve clients.")
        var eventLoops: Int = defaults.eventLoops

        @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical.")
        var logLevel: String = "info"

        func validate() throws {
            guard let mode = UInt32(adminSocketMode, radix: 8), mode == 0o600 || mode == 0o660 else {
                throw ValidationError(
                    "--admin-socket-mode must be 0600 or 0660: the admin socket is never open to others"
                )
            }
            guard let mode = UInt32(workerSocketMode, radix: 8), mode & ~0o660 == 0, mode & 0o600 == 0o600 else {
                throw ValidationError(
                    "--worker-socket-mode must be 0600 or 0660 (or 0620, 0640): the worker socket is never open to others; use --worker-socket-group"
                )
            }
            for (name, value) in [
                ("max-admin-clients", maxAdminClients), ("max-worker-clients", maxWorkerClients),
                ("max-worker-clients-per-uid", maxWorkerClientsPerUID), ("max-frame-size", maxFrameSize),
                ("idle-timeout", idleTimeout), ("read-timeout", readTimeout),
                ("write-timeout", writeTimeout), ("event-loops", eventLoops), ("max-watches", maxWatches),
                ("max-watches-per-token", maxWatchesPerToken), ("watch-heartbeat", watchHeartbeat),
                ("max-changes", maxChanges), ("stale-after", staleAfter),
            ] where value < 1 {
                throw ValidationError("--\(name) must be at least 1")
            }
            for (name, value) in [("max-lag", maxLag), ("write-deadline", writeDeadline)] {
                guard let duration = parseDuration(value), duration <= .seconds(3600) else {
                    throw ValidationError(
                        "--\(name) takes a positive duration of at most an hour, such as 500ms, 2s or 1m"
                    )
                }
            }
            guard staleAfter <= 10 * 366 * 86_400 else {
                throw ValidationError("--stale-after may be at most ten years (in seconds)")
            }
            guard shutdownGrace >= 0 else { throw ValidationError("--shutdown-grace must not be negative") }
            guard sealedKeyGrace >= 0 else { throw ValidationError("--sealed-key-grace must not be negative") }
            guard Logger.Level(rawValue: logLevel) != nil else {
                throw ValidationError("--log-level must be one of trace, debug, info, notice, warning, error, critical")
            }
        }

        func run() async throws {
            // Everything cofferd creates from here on (sockets before their chmod, the lock file) is its own.
            umask(0o077)
            var logger = Logger(label: "cofferd")
            logger.logLevel = Logger.Level(rawValue: logLevel) ?? .info
            try await Cofferd.reporter.runAsync {
                try ProcessProtection.apply()
                var configuration = try serverConfiguration()
                let files = ProcessProtection.raiseFileLimit()
                if files < configuration.maxAdminClients + configuration.maxWorkerClients + 64 {
                    logger.warning(
                        "the open-file limit is below the client limits; raise it (ulimit -n, LimitNOFILE)",
                        metadata: ["limit": "\(files)"]
                    )
                }
                let directory = DataDirectory(data.dataDirectory)
                // Without a store, initialise one; initialize refuses to replace a key left there.
                if initIfMissing, !directory.holdsStore {
                    try directory.initialize(keyFile: data.keyFile, configuration: storeConfiguration).close()
                    logger.notice("initialised a new store", metadata: ["data_dir": "\(data.dataDirectory)"])
                }
                let lock = try directory.lock()
                defer { withExtendedLifetime(lock) {} }
                let store = try directory.open(keyFile: data.keyFile, configuration: storeConfiguration)
                defer { store.close() }
                var cluster: ClusterNode?
                let database = try self.cluster.map { url throws(CofferError) in
                    try DatabaseConfiguration(url: url, password: try databasePassword())
                }
                let postgres = database.map {
                    PostgresLog($0, group: MultiThreadedEventLoopGroup.singleton, logger: logger)
                }
                // Closed however serve ends, a refused join included (a connection must be closed before it goes).
                defer { postgres?.close() }
                if let database, let log = postgres {
                    if let warning = try await ReplicationService.checkJoin(store, log: log) {
                        logger.warning(
                            "starting without the cluster's database; values are served only while this node is recent enough",
                            metadata: ["error": "\(warning)"]
                        )
                    }
                    let status = ReplicationStatus(
                        maxLag: parseDuration(maxLag) ?? .seconds(1),
                        staleAfter: .seconds(staleAfter)
                    )
                    store.replicate(
                        through: log,
                        status: status,
                        writeDeadline: parseDuration(writeDeadline) ?? .seconds(2)
                    )
                    configuration.replication = status
                    cluster = ClusterNode(log: log, status: status)
                    logger.notice("joined the cluster", metadata: ["database": "\(database.description)"])
                }
                if !SecureMemory.canLock() {
                    logger.warning(
                        "secret memory cannot be locked into RAM; raise RLIMIT_MEMLOCK or grant CAP_IPC_LOCK"
                    )
                }
                var metricsServer: MetricsServer?
                if let metricsAddress {
                    let (host, port) = try Self.address(metricsAddress)
                    let metrics = CofferMetrics()
                    configuration.metrics = metrics
                    metricsServer = MetricsServer(metrics: metrics, host: host, port: port, logger: logger)
                }
                try await serve(
                    store: store,
                    configuration: configuration,
                    cluster: cluster,
                    extra: [metricsServer as (any Service)?].compactMap { $0 },
                    logger: logger
                )
            }
        }

        /// Runs the services until a signal stops them: the store first up and last down.
        private func serve(
            store: ConnectionStore,
            configuration: ServerConfiguration,
            cluster: ClusterNode?,
            extra: [any Service],
            logger: Logger
        ) async throws {
            let writer = WriterReference()
            let (journal, recovery) = try AuditJournal.open(
                store: store,
                onThreshold: { writer.queue?.requestFold() },
                report: { message, error in
                    logger.error("\(message)", metadata: ["error": "\(error.message)"])
                }
            )
            if recovery.records > 0 || recovery.droppedBytes > 0 {
                logger.notice(
                    "audit journal recovered",
                    metadata: [
                        "records": "\(recovery.records)", "torn_bytes_dropped": "\(recovery.droppedBytes)",
                    ]
                )
            }
            let commits = CommitQueue(store: store, journal: journal) { message, error in
                logger.error(
                    "\(message)",
                    metadata: ["error": "\(error.message)", "cause": "\(error.causeDescription)"]
                )
            }
            writer.queue = commits
            defer { commits.stop() }
            let replication = cluster.map { cluster in
                ReplicationService(
                    store: store,
                    commits: commits,
                    log: cluster.log,
                    status: cluster.status,
                    logger: logger
                ) as any Service
            }
            let services: [any Service] =
                [
                    StoreService(store: store, commits: commits, logger: logger) as any Service
                ] + [replication].compactMap { $0 } + extra + [
                    AuditWriterService(commits: commits, logger: logger),
                    TokenJanitor(commits: commits, retention: configuration.tokenRetention, logger: logger),
                    ReencryptionService(commits: commits, logger: logger),
                    CofferServer(
                        configuration: configuration,
                        store: store,
                        journal: journal,
                        commits: commits,
                        logger: logger
                    ),
                ]
            // Shutdown signals come through ShutdownSignalService, which cofferd serve always has; the service
            // group's own signal handling is the fallback.
            let signals = ShutdownSignalService(logger: logger)
            var configurations = services.map { ServiceGroupConfiguration.ServiceConfiguration(service: $0) }
            if let signals {
                configurations.insert(
                    .init(service: signals, successTerminationBehavior: .gracefullyShutdownGroup),
                    at: 0
                )
            }
            let group = ServiceGroup(
                configuration: ServiceGroupConfiguration(
                    services: configurations,
                    gracefulShutdownSignals: signals == nil ? [.sigterm, .sigint, .sighup] : [],
                    cancellationSignals: [],
                    logger: logger
                )
            )
            try await group.run()
        }

        private var storeConfiguration: StoreConfiguration {
            var configuration = data.storeConfiguration
            configuration.sealedKeyGrace = .seconds(sealedKeyGrace)
            configuration.limits.maxChangeRecords = maxChanges
            return configuration
        }

        private func serverConfiguration() throws(CofferError) -> ServerConfiguration {
            var configuration = Self.defaults
            configuration.adminSocket = SocketConfiguration(
                path: adminSocket,
                mode: mode_t(adminSocketMode, radix: 8)!,
                group: try adminSocketGroup.map(Self.group)
            )
            configuration.workerSocket = SocketConfiguration(
                path: workerSocket,
                mode: mode_t(workerSocketMode, radix: 8)!,
                group: try workerSocketGroup.map(Self.group)
            )
            if !adminUIDs.isEmpty { configuration.adminUIDs = Set(adminUIDs) }
            configuration.workerUIDs = Set(workerUIDs)
            configuration.workerGIDs = Set(workerGIDs)
            configuration.maxAdminClients = maxAdminClients
            configuration.maxWorkerClients = maxWorkerClients
            configuration.maxWorkerClientsPerUID = maxWorkerClientsPerUID
            configuration.maxFrameSize = maxFrameSize
            configuration.idleTimeout = .seconds(idleTimeout)
            configuration.readTimeout = .seconds(readTimeout)
            configuration.writeTimeout = .seconds(writeTimeout)
            configuration.shutdownGrace = .seconds(shutdownGrace)
            configuration.eventLoops = eventLoops
            if let typesFile { configuration.types = try TypeRegistry.load(file: typesFile) }
            configuration.maxWatches = maxWatches
            configuration.maxWatchesPerToken = maxWatchesPerToken
            configuration.watchHeartbeat = .seconds(watchHeartbeat)
            return configuration
        }

        /// The cluster database's password: from --database-password-file, else COFFER_DATABASE_PASSWORD; never
        /// from argv.
        private func databasePassword() throws(CofferError) -> String? {
            guard let path = databasePasswordFile else {
                return ProcessInfo.processInfo.environment["COFFER_DATABASE_PASSWORD"]
            }
            let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
            guard fd >= 0 else {
                throw CofferError(.failedPrecondition, "cannot read the database password file \(path)")
            }
            defer { close(fd) }
            // As with the master key, checked on the open descriptor: a file its group or others can reach is
            // refused.
            var info = stat()
            guard fstat(fd, &info) == 0, info.st_mode & S_IFMT == S_IFREG else {
                throw CofferError(.failedPrecondition, "the database password file \(path) is not a regular file")
            }
            guard info.st_mode & 0o077 == 0 else {
                throw CofferError(
                    .failedPrecondition,
                    "the database password file \(path) is open to its group or others; fix it with: chmod 600 \(path)"
                )
            }
            var bytes: [UInt8] = []
            var chunk = [UInt8](repeating: 0, count: 4096)
            while bytes.count <= 65536 {
                let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if count <= 0 { break }
                bytes += chunk[0..<count]
            }
            return String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: .newlines)
        }

        /// `HOST:PORT`, for a listener.
        static func address(_ text: String) throws(CofferError) -> (String, Int) {
            guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]),
                (1...65535).contains(port), colon > text.startIndex
            else {
                throw CofferError(.invalidArgument, "--metrics-address takes HOST:PORT, such as 127.0.0.1:9464")
            }
            return (String(text[..<colon]), port)
        }

        /// A group given by name or number.
        static func group(_ text: String) throws(CofferError) -> gid_t {
            if let gid = gid_t(text) { return gid }
            guard let entry = getgrnam(text) else {
                throw CofferError(.invalidArgument, "no group named \(text)")
            }
            return entry.pointee.gr_gid
        }
    }
}

/// A cluster node's log and status, from the command line to the services.
private struct ClusterNode {
    let log: PostgresLog
    let status: ReplicationStatus
}

/// Lets the journal, made before the writer, ask the writer to fold.
private final class WriterReference: @unchecked Sendable {
    // Set once, before the services start; read by the journal afterwards.
    var queue: CommitQueue?
}

import ArgumentParser
import CofferCore
import CofferCrypto
import CofferServer
import CofferStore
import CofferWire
import Foundation
import Logging
import ServiceLifecycle

extension Cofferd {
    struct Serve: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Serve the admin and worker sockets until SIGTERM or SIGINT.")

        @OptionGroup var data: DataOptions

        @Flag(name: .customLong("init-if-missing"),
              help: "Create the data directory, key and store on first start (the embedded default).")
        var initIfMissing = false

        @Option(name: .customLong("admin-socket"), help: "The admin socket's path.")
        var adminSocket: String = CofferDefaults.adminSocket

        @Option(name: .customLong("admin-socket-mode"), help: "The admin socket's mode: 0600 or 0660.")
        var adminSocketMode: String = "0600"

        @Option(name: .customLong("admin-socket-group"), help: "Give the admin socket this group (a name or gid).")
        var adminSocketGroup: String?

        @Option(name: .customLong("admin-uid"),
                help: "A uid allowed on the admin socket; repeat for several. Default: cofferd's own uid and root.")
        var adminUIDs: [UInt32] = []

        @Option(name: .customLong("worker-socket"), help: "The worker socket's path.")
        var workerSocket: String = CofferDefaults.workerSocket

        @Option(name: .customLong("worker-socket-mode"), help: "The worker socket's mode, in octal.")
        var workerSocketMode: String = "0660"

        @Option(name: .customLong("worker-socket-group"), help: "Give the worker socket this group (a name or gid).")
        var workerSocketGroup: String?

        @Option(name: .customLong("max-connections"), help: "The most connections served at once.")
        var maxConnections: Int = 256

        @Option(name: .customLong("max-frame-size"), help: "The largest frame read, in bytes.")
        var maxFrameSize: Int = Framing.defaultMaxFrameSize

        @Option(name: .customLong("idle-timeout"), help: "Close a connection silent this many seconds.")
        var idleTimeout: Int = 300

        @Option(name: .customLong("read-timeout"), help: "Close a connection whose frame is not complete within this many seconds.")
        var readTimeout: Int = 10

        @Option(name: .customLong("shutdown-grace"), help: "On SIGTERM, give requests in flight this many seconds.")
        var shutdownGrace: Int = 10

        @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical.")
        var logLevel: String = "info"

        func validate() throws {
            guard let mode = UInt32(adminSocketMode, radix: 8), mode == 0o600 || mode == 0o660 else {
                throw ValidationError("--admin-socket-mode must be 0600 or 0660: the admin socket is never open to others")
            }
            guard let mode = UInt32(workerSocketMode, radix: 8), mode <= 0o777, mode & 0o600 == 0o600 else {
                throw ValidationError("--worker-socket-mode must be an octal mode that lets the owner read and write, such as 0660")
            }
            for (name, value) in [("max-connections", maxConnections), ("max-frame-size", maxFrameSize),
                                  ("idle-timeout", idleTimeout), ("read-timeout", readTimeout)] where value < 1 {
                throw ValidationError("--\(name) must be at least 1")
            }
            guard shutdownGrace >= 0 else { throw ValidationError("--shutdown-grace must not be negative") }
            guard Logger.Level(rawValue: logLevel) != nil else {
                throw ValidationError("--log-level must be one of trace, debug, info, notice, warning, error, critical")
            }
        }

        func run() async throws {
            // Everything cofferd creates from here on (sockets before their chmod, the lock file) is its own.
            umask(0o077)
            var logger = Logger(label: "cofferd")
            logger.logLevel = Logger.Level(rawValue: logLevel) ?? .info
            try await reportingErrors {
                try ProcessProtection.apply()
                let directory = DataDirectory(data.dataDirectory)
                // Without a store, initialise one; initialize refuses to replace a key left there.
                if initIfMissing, !directory.holdsStore {
                    try directory.initialize(keyFile: data.keyFile, configuration: data.storeConfiguration).close()
                    logger.notice("initialised a new store", metadata: ["data_dir": "\(data.dataDirectory)"])
                }
                let lock = try directory.lock()
                let store = try directory.open(keyFile: data.keyFile, configuration: data.storeConfiguration)
                defer {
                    // LMDB closes last, after the server has stopped and written its audit records.
                    store.close()
                    withExtendedLifetime(lock) {}
                }
                if !SecureMemory.canLock() {
                    logger.warning("secret memory cannot be locked into RAM; raise RLIMIT_MEMLOCK or grant CAP_IPC_LOCK")
                }
                var configuration = ServerConfiguration(
                    adminSocket: SocketConfiguration(path: adminSocket, mode: mode_t(adminSocketMode, radix: 8)!,
                                                     group: try adminSocketGroup.map(Self.group)),
                    workerSocket: SocketConfiguration(path: workerSocket, mode: mode_t(workerSocketMode, radix: 8)!,
                                                      group: try workerSocketGroup.map(Self.group)))
                if !adminUIDs.isEmpty { configuration.adminUIDs = Set(adminUIDs) }
                configuration.maxConnections = maxConnections
                configuration.maxFrameSize = maxFrameSize
                configuration.idleTimeout = .seconds(idleTimeout)
                configuration.readTimeout = .seconds(readTimeout)
                configuration.shutdownGrace = .seconds(shutdownGrace)
                let server = CofferServer(configuration: configuration, store: store, logger: logger)
                let group = ServiceGroup(services: [server], gracefulShutdownSignals: [.sigterm, .sigint],
                                         cancellationSignals: [], logger: logger)
                try await group.run()
            }
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

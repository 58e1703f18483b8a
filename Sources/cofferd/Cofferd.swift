import ArgumentParser
import CofferCommandLine
import CofferCore
import CofferCrypto
import CofferStore
import CofferWire
import Foundation

@main
struct Cofferd: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cofferd",
        abstract: "The Coffer secrets daemon: sealed connection values for workflow steps.",
        discussion: ErrorReporter.exitStatusHelp,
        subcommands: [Init.self, Status.self, Verify.self, Backup.self, Restore.self, Serve.self]
    )

    static let reporter = ErrorReporter(tool: "cofferd")
}

/// Options every subcommand that touches a data directory shares.
struct DataOptions: ParsableArguments {
    @Option(name: .customLong("data-dir"), help: "The data directory (mode 0700).")
    var dataDirectory: String = CofferDefaults.dataDirectory

    @Option(
        name: .customLong("key-file"),
        help: ArgumentHelp(
            "Read the master key from this file instead of DATA_DIR/master.key.",
            discussion:
                "For systemd credentials, pass ${CREDENTIALS_DIRECTORY}/NAME; for Kubernetes, a file in a secret volume with defaultMode 0400."
        )
    )
    var keyFile: String?

    @Option(name: .customLong("map-size"), help: "The most the store may hold, in MiB; its map grows up to it.")
    var mapSizeMiB: Int = StoreConfiguration.defaultMapSize >> 20

    func validate() throws {
        guard mapSizeMiB >= 1, mapSizeMiB <= 1 << 20 else {
            throw ValidationError("--map-size must be between 1 and 1048576 MiB")
        }
    }

    var storeConfiguration: StoreConfiguration {
        StoreConfiguration(directory: dataDirectory, mapSize: mapSizeMiB << 20)
    }
}

extension Cofferd {
    struct Init: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create a data directory, a master key and an empty store.",
            discussion:
                "Never replaces an existing key or store. With --key-file naming an existing file, that key is used; otherwise a new key is written there (or to DATA_DIR/master.key)."
        )

        @OptionGroup var data: DataOptions

        func run() throws {
            try Cofferd.reporter.run {
                let store = try DataDirectory(data.dataDirectory)
                    .initialize(keyFile: data.keyFile, configuration: data.storeConfiguration)
                defer { store.close() }
                print("cofferd: initialised a store in \(data.dataDirectory)")
                print("key file: \(data.keyFile ?? DataDirectory(data.dataDirectory).defaultKeyFile)")
                printKeys(store.keys)
            }
        }
    }

    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Open the store, check the master key, and print counts and sizes (never a value)."
        )

        @OptionGroup var data: DataOptions

        func run() throws {
            try Cofferd.reporter.run {
                let store = try DataDirectory(data.dataDirectory)
                    .open(keyFile: data.keyFile, configuration: data.storeConfiguration, access: .inspecting)
                defer { store.close() }
                let status = try store.status()
                print("data directory: \(data.dataDirectory)")
                printKeys(store.keys)
                print("format version: \(status.formatVersion)")
                print("created: \(status.created.formatted(.iso8601))")
                print("connections: \(status.connections)")
                print("grants: \(status.grants)")
                print("tokens: \(status.tokens)")
                print(
                    "audit records: \(status.auditRecords) (records of the last second of a serving cofferd may still be in its journal)"
                )
                print("map: \(status.usedBytes >> 10) KiB used of \(status.mapSize >> 20) MiB")
                let keyStatus = try store.keyStatus()
                print("key generations:")
                printTable(keyStatus.rows)
                print(keyStatus.progressLine)
                print(
                    "secret memory locked: \(SecureMemory.canLock() ? "yes" : "no (raise RLIMIT_MEMLOCK or grant CAP_IPC_LOCK)")"
                )
            }
        }
    }
}

extension Cofferd {
    struct Verify: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check every record, the store's summary, the audit chain and the journal; name what fails.",
            discussion:
                "Never prints a value. Exits 0 when everything verifies and 10 (data loss) when something does not. It may run while cofferd serves."
        )

        @OptionGroup var data: DataOptions

        func run() throws {
            try Cofferd.reporter.run {
                let store = try DataDirectory(data.dataDirectory)
                    .open(keyFile: data.keyFile, configuration: data.storeConfiguration, access: .unverified)
                defer { store.close() }
                let problems = try store.verificationProblems()
                for problem in problems {
                    FileHandle.standardError.write(Data("cofferd: verify: \(problem.message)\n".utf8))
                }
                guard problems.isEmpty else {
                    throw CofferError(
                        .dataLoss,
                        "\(problems.count) problem\(problems.count == 1 ? "" : "s") in \(data.dataDirectory)"
                    )
                }
                let status = try store.status()
                print(
                    "verified \(data.dataDirectory): \(status.connections) connections, \(status.grants) grants, \(status.tokens) tokens, \(status.auditRecords) audit records"
                )
            }
        }
    }
}

extension Cofferd {
    struct Backup: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write a consistent, compacted copy of the store to a new file; it stays sealed.",
            discussion:
                "May run while cofferd serves (the copy is one read transaction). The backup holds no key: keep the master key, backed up apart, to restore it. Never replaces a file. Audit records of the last second may still be in a serving cofferd's journal and are not in the backup."
        )

        @OptionGroup var data: DataOptions
        @Option(name: .customLong("to"), help: "The backup file to create.") var file: String

        func run() throws {
            try Cofferd.reporter.run {
                let report = try DataDirectory(data.dataDirectory)
                    .backup(to: file, keyFile: data.keyFile, configuration: data.storeConfiguration)
                print(
                    "backed up \(data.dataDirectory) to \(report.path): \(report.bytes >> 10) KiB, \(report.status.connections) connections, \(report.status.grants) grants, \(report.status.tokens) tokens, \(report.status.auditRecords) audit records"
                )
            }
        }
    }

    struct Restore: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Install a backup as the store of an empty data directory, after verifying it in full.",
            discussion:
                "The data directory must hold no store and no cofferd may serve it. The master key the backup was made with must be at DATA_DIR/master.key or given with --key-file. Restoring an older backup rolls the whole store back: cofferd cannot tell, so keep backups where only operators can write."
        )

        @OptionGroup var data: DataOptions
        @Option(name: .customLong("from"), help: "The backup file.") var file: String

        func run() throws {
            try Cofferd.reporter.run {
                let report = try DataDirectory(data.dataDirectory)
                    .restore(from: file, keyFile: data.keyFile, configuration: data.storeConfiguration)
                print(
                    "restored \(file) into \(data.dataDirectory): \(report.status.connections) connections, \(report.status.grants) grants, \(report.status.tokens) tokens, \(report.status.auditRecords) audit records; verified"
                )
            }
        }
    }
}

func printKeys(_ keys: KeyRing) {
    print("key id: \(keys.keyID)")
    print("public key: \(Data(keys.publicKey).base64EncodedString())")
}

import ArgumentParser
import CofferClient
import CofferCommandLine
import CofferCore
import CofferCrypto
import CofferWire
import Foundation

@main
struct Coffer: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "coffer",
        abstract: "Put, grant and get Coffer connections through cofferd.",
        discussion: """
            A connection's type is the first part of its name (aws/my-aws-account); coffer types lists the types \
            and their fields. Fields are read from stdin or a file as a JSON object of strings, or asked for one \
            by one when stdin is a terminal. Secret values are sealed to cofferd's public key and never read back \
            by admins; public fields (a base URL, a region, a username) are configuration admins may read back. \
            Workers get connections with a workflow token from COFFER_TOKEN or --token-file. \
            Before sending anything, coffer checks through the kernel that the socket's listener runs as the uid \
            in COFFER_SERVER_UID or, without it, as the owner of the socket's directory (or as root).
            \(ErrorReporter.exitStatusHelp)
            """,
        subcommands: [
            Types.self, Put.self, Overwrite.self, Update.self, Delete.self, List.self, Describe.self, Grant.self,
            Revoke.self, Token.self, Audit.self, Health.self, Get.self, Watch.self, Resolve.self, Exec.self,
            Key.self,
        ]
    )

    static let reporter = ErrorReporter(tool: "coffer") { error in
        guard error.code == .unavailable, error.message.hasPrefix("cannot connect") else { return nil }
        return "start cofferd, or point COFFER_ADMIN_SOCKET / COFFER_WORKER_SOCKET at its sockets"
    }
}

/// The sockets, from options, the environment or the host defaults.
struct SocketOptions: ParsableArguments {
    @Option(name: .customLong("admin-socket"), help: "The admin socket (or COFFER_ADMIN_SOCKET).")
    var adminSocket: String = ProcessInfo.processInfo.environment["COFFER_ADMIN_SOCKET"] ?? CofferDefaults.adminSocket

    @Option(name: .customLong("worker-socket"), help: "The worker socket (or COFFER_WORKER_SOCKET).")
    var workerSocket: String =
        ProcessInfo.processInfo.environment["COFFER_WORKER_SOCKET"] ?? CofferDefaults.workerSocket

    func admin() throws(CofferError) -> CofferAdminClient { try CofferAdminClient(socketPath: adminSocket) }
    func worker() throws(CofferError) -> CofferWorkerClient { try CofferWorkerClient(socketPath: workerSocket) }
}

extension Coffer {
    struct Grant: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Let a workflow get a connection.")

        @Argument(help: "The workflow.") var workflow: String
        @Argument(help: "The connection, type/name.") var connection: String
        @OptionGroup var sockets: SocketOptions

        func run() throws {
            try reporting {
                let name = try WorkflowName(workflow)
                let ref = try ConnectionRef(parsing: connection)
                let admin = try sockets.admin()
                let created = try admin.grant(name, ref)
                print(
                    created
                        ? "granted \(ref) to \(name) at revision \(admin.socket.lastRevision)"
                        : "\(name) already holds a grant for \(ref)"
                )
            }
        }
    }

    struct Revoke: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Take a workflow's grant for a connection away.")

        @Argument(help: "The workflow.") var workflow: String
        @Argument(help: "The connection, type/name.") var connection: String
        @OptionGroup var sockets: SocketOptions

        func run() throws {
            try reporting {
                let name = try WorkflowName(workflow)
                let ref = try ConnectionRef(parsing: connection)
                let admin = try sockets.admin()
                try admin.revoke(name, ref)
                print("revoked \(name)'s grant for \(ref) at revision \(admin.socket.lastRevision)")
            }
        }
    }

    struct Token: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Issue and revoke workflow tokens.",
            subcommands: [Issue.self, RevokeToken.self]
        )

        struct Issue: ParsableCommand {
            static let configuration = CommandConfiguration(
                commandName: "issue",
                abstract: "Issue a token for a workflow and print it once.",
                discussion:
                    "Prints the token alone on stdout, or with --json an object with the token, its id and its expiry."
            )

            @Argument(help: "The workflow.") var workflow: String
            @Option(help: "How long the token lives: 90s, 15m, 1h, 7d (default 1h, at most 30d).") var ttl: String?
            @Option(name: .customLong("run-id"), help: "A run id recorded in the audit trail of the token's requests.")
            var runID: String?
            @Flag(help: "Print JSON.") var json = false
            @OptionGroup var sockets: SocketOptions

            func validate() throws {
                if let ttl, parseDuration(ttl) == nil || parseDuration(ttl)! > .seconds(30 * 24 * 3600) {
                    throw ValidationError(
                        "--ttl must be a number of seconds or a number with s, m, h or d, such as 15m"
                    )
                }
            }

            func run() throws {
                try reporting {
                    let name = try WorkflowName(workflow)
                    let run = try runID.map { text throws(CofferError) in try RunID(text) }
                    let issued = try sockets.admin().issueToken(for: name, ttl: ttl.flatMap(parseDuration), runID: run)
                    let token = issued.token.withUnsafeBytes { String(decoding: $0, as: UTF8.self) }
                    if json {
                        printJSON(
                            [
                                "token": token, "id": issued.info.id.rawValue,
                                "expires": issued.info.expires.formatted(.iso8601),
                            ] as [String: Any]
                        )
                    } else {
                        print(token)
                    }
                }
            }
        }

        struct RevokeToken: ParsableCommand {
            static let configuration = CommandConfiguration(
                commandName: "revoke",
                abstract: "Revoke a token by its id."
            )

            @Argument(help: "The token's id (16 hex digits).") var id: String
            @OptionGroup var sockets: SocketOptions

            func run() throws {
                try reporting {
                    let tokenID = try TokenID(id)
                    try sockets.admin().revokeToken(id: tokenID)
                    print("revoked token \(tokenID)")
                }
            }
        }
    }

    struct Audit: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show the audit trail, oldest first.")

        @Flag(help: "Print JSON.") var json = false
        @Option(help: "Only records after this sequence number.") var after: UInt64 = 0
        @Option(help: "At most this many records (up to 1000).") var limit: UInt32 = 1000
        @OptionGroup var sockets: SocketOptions

        func run() throws {
            try reporting {
                let records = try sockets.admin().audit(after: after, limit: limit).records
                if json {
                    printJSON(
                        records.map { r -> [String: Any] in
                            [
                                "sequence": r.sequence, "time": r.time.formatted(.iso8601), "socket": r.socket.rawValue,
                                "operation": r.action.name, "connection": r.connection?.description ?? "",
                                "workflow": r.workflow?.rawValue ?? "", "token_id": r.tokenID?.rawValue ?? "",
                                "run_id": r.runID?.rawValue ?? "", "peer_uid": r.peerUID, "peer_pid": r.peerPID,
                                "outcome": r.outcome.name, "count": r.count,
                            ]
                        }
                    )
                    return
                }
                var rows = [
                    [
                        "SEQ", "TIME", "SOCKET", "OPERATION", "CONNECTION", "WORKFLOW", "TOKEN", "RUN", "UID", "PID",
                        "OUTCOME", "COUNT",
                    ]
                ]
                for r in records {
                    rows.append([
                        "\(r.sequence)", r.time.formatted(.iso8601), r.socket.rawValue, r.action.name,
                        dash(r.connection?.description), dash(r.workflow?.rawValue), dash(r.tokenID?.rawValue),
                        dash(r.runID?.rawValue), "\(r.peerUID)", "\(r.peerPID)", r.outcome.name, "\(r.count)",
                    ])
                }
                printTable(rows)
            }
        }
    }

    struct Key: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Rotate the key values are sealed and stored under; see what each key generation still holds.",
            subcommands: [Rotate.self, Status.self, Retire.self]
        )

        struct Rotate: ParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Make a new key generation active.",
                discussion:
                    "The new public key is what clients seal to from now on; values sealed to the previous key are taken for cofferd's grace period (--sealed-key-grace). cofferd re-encrypts every stored value to the new generation in the background: follow it with coffer key status."
            )

            @OptionGroup var sockets: SocketOptions

            func run() throws {
                try reporting {
                    let generation = try sockets.admin().rotateKey()
                    print("key generation \(generation.number) is active: key id \(generation.keyID)")
                }
            }
        }

        struct Status: ParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Every key generation, what depends on it, and the re-encryption's progress."
            )

            @Flag(help: "Print JSON.") var json = false
            @OptionGroup var sockets: SocketOptions

            func run() throws {
                try reporting {
                    let status = try sockets.admin().keyStatus()
                    if json {
                        printJSON(status.json)
                    } else {
                        printTable(status.rows)
                        print(status.progressLine)
                    }
                }
            }
        }

        struct Retire: ParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Retire a key generation that nothing depends on any more.",
                discussion:
                    "Refused while it is active, within its grace period, or while stored values, records or live tokens depend on it."
            )

            @Argument(help: "The generation's number (coffer key status).") var generation: UInt32
            @OptionGroup var sockets: SocketOptions

            func run() throws {
                try reporting {
                    let retired = try sockets.admin().retireKey(generation)
                    print("key generation \(retired.number) (key id \(retired.keyID)) is retired")
                }
            }
        }
    }

    struct Health: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Check that cofferd is serving on both sockets.")

        @OptionGroup var sockets: SocketOptions

        func run() throws {
            try reporting {
                let admin = try sockets.admin().health()
                let worker = try sockets.worker().health()
                for (socket, report) in [("admin", admin), ("worker", worker)] {
                    let reason = report.reason.map { ": \($0)" } ?? ""
                    print(
                        "\(socket) socket: \(report.serving ? "serving" : "not serving")\(reason) (key \(report.keyID))"
                    )
                }
                print("revision \(admin.revision)")
                if let cluster = admin.cluster {
                    let since = cluster.lastSync.map { "\(Int(Date().timeIntervalSince($0)))s ago" } ?? "never"
                    print(
                        "cluster: \(cluster.state.rawValue), log at revision \(cluster.head), last had all of it \(since)"
                    )
                }
                if !admin.serving || !worker.serving {
                    throw CofferError(.unavailable, "cofferd is not serving")
                }
            }
        }
    }
}

/// Runs a command body, reporting a Coffer error in the command lines' one voice.
func reporting(_ body: () throws -> Void) throws {
    try Coffer.reporter.run(body)
}

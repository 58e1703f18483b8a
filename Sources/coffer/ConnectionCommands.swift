import ArgumentParser
import CofferClient
import CofferCommandLine
import CofferConnections
import CofferCore
import CofferCrypto
import Foundation

// What admins do with connections on the admin socket: create, replace, change and delete them, and see
// everything about them but their secret values.

extension Coffer {
    struct Types: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List the connection types cofferd knows, or one type's variants and fields."
        )

        @Argument(help: "A type, to show its variants and fields.") var type: String?
        @Flag(
            help:
                "Print JSON: {\"types\": [...]}, the shape cofferd serve --types reads (a type of your own round-trips)."
        )
        var json = false
        @OptionGroup var sockets: SocketOptions

        func run() throws {
            try reporting {
                let types = try sockets.admin().types()
                if let type {
                    guard let found = types.first(where: { $0.name == type }) else {
                        throw CofferError(
                            .notFound,
                            "there is no connection type \(type); the types are \(types.map(\.name).joined(separator: ", "))"
                        )
                    }
                    if json { return printJSON(["types": [try Self.object(found)]]) }
                    print("\(found.name) (version \(found.version)): \(found.description)")
                    for variant in found.variants {
                        print(
                            "\nvariant \(variant.name)\(variant.name == found.defaultVariant.name ? " (default)" : ""): \(variant.description)"
                        )
                        var rows = [["FIELD", "SECRET", "REQUIRED", "FORMAT", "ENVIRONMENT", "DESCRIPTION"]]
                        for field in variant.fields {
                            rows.append([
                                field.isFamily ? field.name + "NAME" : field.name, field.secret ? "secret" : "public",
                                field.generated ? "generated" : field.required ? "yes" : "no", field.format.rawValue,
                                dash(field.environment), field.description,
                            ])
                        }
                        printTable(rows)
                        if !variant.requiresOneOf.isEmpty {
                            let names = variant.requiresOneOf.map { $0.hasSuffix(".") ? $0 + "NAME" : $0 }
                            print("at least one of \(names.joined(separator: ", ")) is required")
                        }
                    }
                    return
                }
                if json { return printJSON(["types": try types.map(Self.object)]) }
                var rows = [["TYPE", "VERSION", "VARIANTS", "DESCRIPTION"]]
                for type in types {
                    rows.append([
                        type.name, "\(type.version)", type.variants.map(\.name).joined(separator: ","),
                        type.description,
                    ])
                }
                printTable(rows)
            }
        }

        static func object(_ type: ConnectionType) throws -> Any {
            try JSONSerialization.jsonObject(with: JSONEncoder().encode(type))
        }
    }

    struct Put: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create a connection: its fields as a JSON object on stdin, or asked for on a terminal.",
            discussion:
                "The type is the name's first part (coffer types lists them). Public fields travel in clear; secret ones are sealed to cofferd's key. cofferd checks the connection against its type and says which field breaks which rule, never a value."
        )

        @Argument(help: "The connection, type/name.") var connection: String
        @Option(help: "The type's variant (default: its first).") var variant: String?
        @OptionGroup var input: FieldInput
        @OptionGroup var sockets: SocketOptions

        func run() throws {
            try reporting {
                let ref = try ConnectionRef(parsing: connection)
                let admin = try sockets.admin()
                let chosen = try admin.variant(for: ref, named: variant)
                let fields = SplitFields(try input.read(asking: chosen, for: ref), variant: chosen)
                let info = try admin.put(
                    ref,
                    variant: variant,
                    publicFields: fields.publicFields,
                    values: fields.secretFields
                )
                print(
                    "put \(info.ref) (\(info.servedType), \(dash(info.shape.variant))) version \(info.version) with fields \(info.fields.map(\.rawValue).joined(separator: ", ")) at revision \(admin.socket.lastRevision)"
                )
            }
        }
    }

    struct Overwrite: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Replace all of a connection's fields, from a JSON object on stdin (coffer update changes some)."
        )

        @Argument(help: "The connection, type/name.") var connection: String
        @Option(help: "The type's variant (default: the connection's).") var variant: String?
        @Option(name: .customLong("expect-version"), help: "Only if the connection is at this version.")
        var expectVersion: UInt64?
        @OptionGroup var input: FieldInput
        @OptionGroup var sockets: SocketOptions

        func run() throws {
            try reporting {
                let ref = try ConnectionRef(parsing: connection)
                let admin = try sockets.admin()
                let current = try admin.describe(ref)
                // A connection stored before types keeps every field secret.
                let chosen =
                    current.shape.isUntyped
                    ? nil : try admin.variant(for: ref, named: variant ?? current.shape.variant)
                let fields = SplitFields(try input.read(asking: chosen, for: ref), variant: chosen)
                let info = try admin.overwrite(
                    ref,
                    variant: variant,
                    publicFields: fields.publicFields,
                    values: fields.secretFields,
                    expectedVersion: expectVersion
                )
                print("overwrote \(info.ref), now version \(info.version), at revision \(admin.socket.lastRevision)")
            }
        }
    }

    struct Update: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Change some of a connection's fields; every secret not named is kept.",
            discussion: """
                --set sets a public field (a base URL, a region, a header); --secret names a secret field to \
                replace or add, whose value is asked for without echo on a terminal or read from a JSON object on \
                stdin (or --from-file) that names exactly those fields; --remove removes an optional field.
                """
        )

        @Argument(help: "The connection, type/name.") var connection: String
        @Option(name: .customLong("set"), help: "A public field to set: FIELD=VALUE.") var set: [String] = []
        @Option(name: .customLong("secret"), help: "A secret field to replace or add.") var secret: [String] = []
        @Option(name: .customLong("remove"), help: "An optional field to remove.") var remove: [String] = []
        @Option(name: .customLong("expect-version"), help: "Only if the connection is at this version.")
        var expectVersion: UInt64?
        @OptionGroup var input: FieldInput
        @OptionGroup var sockets: SocketOptions

        func run() throws {
            try reporting {
                let ref = try ConnectionRef(parsing: connection)
                let admin = try sockets.admin()
                var setPublic: [FieldName: String] = [:]
                for assignment in set {
                    guard let equals = assignment.firstIndex(of: "=") else {
                        throw CofferError(.invalidArgument, "--set takes FIELD=VALUE")
                    }
                    setPublic[try FieldName(String(assignment[..<equals]))] = String(
                        assignment[assignment.index(after: equals)...]
                    )
                }
                let current = try admin.describe(ref)
                let variant =
                    current.shape.isUntyped
                    ? nil : try admin.variant(for: ref, named: current.shape.variant)
                for name in setPublic.keys where current.shape.isUntyped || variant?.spec(for: name)?.secret != false {
                    throw CofferError(
                        .invalidArgument,
                        "field \(name) of \(ref) is secret: name it with --secret \(name), never in argv"
                    )
                }
                let names = try secret.map { text throws(CofferError) in try FieldName(text) }
                var setSecret: [FieldName: SecretBytes] = [:]
                if !names.isEmpty {
                    if input.fromFile == nil, isatty(STDIN_FILENO) == 1 {
                        for name in names {
                            setSecret[name] = try Prompter().secret(name)
                        }
                    } else {
                        setSecret = try input.readJSON()
                        guard Set(setSecret.keys) == Set(names) else {
                            throw CofferError(
                                .invalidArgument,
                                "the JSON on stdin must name exactly the fields given with --secret"
                            )
                        }
                    }
                }
                let info = try admin.update(
                    ref,
                    setPublic: setPublic,
                    setSecret: setSecret,
                    remove: try remove.map { text throws(CofferError) in try FieldName(text) },
                    expectedVersion: expectVersion
                )
                print("updated \(info.ref), now version \(info.version), at revision \(admin.socket.lastRevision)")
            }
        }
    }

    struct Delete: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete a connection and revoke its grants.")

        @Argument(help: "The connection, type/name.") var connection: String
        @Option(name: .customLong("expect-version"), help: "Only if the connection is at this version.")
        var expectVersion: UInt64?
        @OptionGroup var sockets: SocketOptions

        func run() throws {
            try reporting {
                let ref = try ConnectionRef(parsing: connection)
                let admin = try sockets.admin()
                try admin.delete(ref, expectedVersion: expectVersion)
                print("deleted \(ref) at revision \(admin.socket.lastRevision)")
            }
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List connections: types, variants, public fields, which secrets are set, grants; never a secret."
        )

        @Flag(help: "Print JSON.") var json = false
        @OptionGroup var sockets: SocketOptions

        func run() throws {
            try reporting {
                let connections = try sockets.admin().list()
                if json { return printJSON(connections.map(infoObject)) }
                var rows = [["CONNECTION", "TYPE", "VARIANT", "VERSION", "PUBLIC", "SECRET", "GRANTS", "UPDATED"]]
                for info in connections {
                    rows.append([
                        info.ref.description, info.servedType, dash(info.shape.variant), "\(info.version)",
                        dash(info.shape.publicFields.keys.sorted().map(\.rawValue).joined(separator: ",")),
                        dash(info.secretFields.map(\.rawValue).joined(separator: ",")),
                        dash(info.grants.map(\.rawValue).joined(separator: ",")), info.updated.formatted(.iso8601),
                    ])
                }
                printTable(rows)
            }
        }
    }

    struct Describe: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show one connection: type, variant, public fields, which secrets are set, versions, grants."
        )

        @Argument(help: "The connection, type/name.") var connection: String
        @Flag(help: "Print JSON.") var json = false
        @OptionGroup var sockets: SocketOptions

        func run() throws {
            try reporting {
                let info = try sockets.admin().describe(try ConnectionRef(parsing: connection))
                if json { return printJSON(infoObject(info)) }
                var rows = [
                    ["connection", info.ref.description],
                    [
                        "type",
                        info.shape.isUntyped
                            ? "generic (stored before types)"
                            : "\(info.ref.type) version \(info.shape.typeVersion), variant \(info.shape.variant)",
                    ],
                    ["version", "\(info.version)"],
                    ["created", info.created.formatted(.iso8601)],
                    ["updated", info.updated.formatted(.iso8601)],
                ]
                for (index, (name, value)) in info.shape.publicFields.sorted(by: { $0.key < $1.key }).enumerated() {
                    rows.append([index == 0 ? "public" : "", "\(name) = \(value)"])
                }
                for (index, name) in info.secretFields.enumerated() {
                    rows.append([index == 0 ? "secret" : "", "\(name) (set; never shown)"])
                }
                rows.append(["grants", dash(info.grants.map(\.rawValue).joined(separator: ", "))])
                printTable(rows)
            }
        }
    }
}

/// A connection's metadata as JSON: never a secret value.
func infoObject(_ info: ConnectionInfo) -> [String: Any] {
    var publicFields: [String: String] = [:]
    for (name, value) in info.shape.publicFields { publicFields[name.rawValue] = value }
    return [
        "connection": info.ref.description, "type": info.servedType, "type_version": info.shape.typeVersion,
        "variant": info.shape.variant, "fields": info.fields.map(\.rawValue), "public_fields": publicFields,
        "secret_fields": info.secretFields.map(\.rawValue), "version": info.version,
        "created": info.created.formatted(.iso8601), "updated": info.updated.formatted(.iso8601),
        "grants": info.grants.map(\.rawValue),
    ]
}

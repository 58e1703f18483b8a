import ArgumentParser
import CofferClient
import CofferCommandLine
import CofferConnections
import CofferCore
import CofferCrypto
import Foundation
import Yams

// What a workflow step does on the worker socket: get a connection typed, resolve the connection references
// of a step spec, or run a command with connections in its environment. The token comes from COFFER_TOKEN or
// --token-file, never from argv, and nothing here prints a value anywhere but stdout (or the command's
// environment).

/// The workflow token and the worker socket.
struct StepOptions: ParsableArguments {
    @Option(name: .customLong("token-file"), help: "Read the workflow token from this file (else COFFER_TOKEN).")
    var tokenFile: String?
    @OptionGroup var sockets: SocketOptions

    func token() throws(CofferError) -> SecretBytes {
        if let tokenFile {
            guard let data = FileManager.default.contents(atPath: tokenFile) else {
                throw CofferError(.invalidArgument, "cannot read token file \(tokenFile)")
            }
            let trimmed = data.prefix { $0 != UInt8(ascii: "\n") && $0 != UInt8(ascii: "\r") }
            return SecretBytes(copying: trimmed)
        }
        if let token = ProcessInfo.processInfo.environment["COFFER_TOKEN"], !token.isEmpty {
            return SecretBytes(utf8: token)
        }
        throw CofferError(.unauthenticated, "no workflow token: set COFFER_TOKEN or pass --token-file PATH")
    }

    /// Gets each connection once, in the order first asked for.
    func fetch(_ refs: [ConnectionRef]) throws(CofferError) -> [ConnectionRef: ConnectionValues] {
        let worker = try sockets.worker()
        let token = try token()
        var result: [ConnectionRef: ConnectionValues] = [:]
        for ref in refs where result[ref] == nil {
            do {
                result[ref] = try worker.get(ref, token: token)
            } catch {
                throw CofferError(error.code, "connection \(ref): \(error.message)", cause: error)
            }
        }
        return result
    }
}

enum GetFormat: String, ExpressibleByArgument, CaseIterable {
    case json, env
    case curlConfig = "curl-config"
}

extension Coffer {
    struct Get: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Get a connection on the worker socket with a workflow token.",
            discussion: """
                Prints JSON: the connection, its type and variant, every field, and which fields are secret (so a \
                runner can mask them). --field prints one field's raw value; --format env prints the variables \
                its type maps fields to (AWS_ACCESS_KEY_ID=...) for eval; --format curl-config prints a config for \
                `curl -K -` with the base URL (and --path), parameters, headers and auth of an http connection, \
                so that no secret reaches argv.
                """
        )

        @Argument(help: "The connection, type/name.") var connection: String
        @Option(help: "Print only this field's raw value.") var field: String?
        @Option(help: "json, env or curl-config.") var format: GetFormat = .json
        @Option(help: "With --format curl-config: a path to append to the base URL.") var path: String?
        @OptionGroup var step: StepOptions

        func run() throws {
            try reporting {
                let ref = try ConnectionRef(parsing: connection)
                let fieldName = try field.map { text throws(CofferError) in try FieldName(text) }
                let values = try step.sockets.worker().get(ref, token: try step.token())
                if let fieldName {
                    if let value = values.fields[fieldName] {
                        value.withUnsafeBytes { FileHandle.standardOutput.write(Data($0)) }
                    } else if let value = values.shape.publicFields[fieldName] {
                        FileHandle.standardOutput.write(Data(value.utf8))
                    } else {
                        throw CofferError(.notFound, "connection \(ref) has no field \(fieldName)")
                    }
                    return
                }
                switch format {
                case .json:
                    printJSON(try values.typedJSON())
                case .env:
                    for (name, value) in try values.environmentVariables() { print("\(name)=\(shellQuoted(value))") }
                case .curlConfig:
                    FileHandle.standardOutput.write(Data(try values.curlConfig(path: path).utf8))
                }
            }
        }
    }

    struct Resolve: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Resolve the connection references of a step spec (YAML or JSON) read from stdin.",
            discussion: """
                Replaces every ${connections.TYPE.'NAME'} and !Connection { type: TYPE, name: NAME } with that \
                connection's fields (a map), and every ${connections.TYPE.'NAME'.FIELD} with one field's value, for \
                the connections the token's workflow is granted; writes the spec to stdout in the form it was read. \
                A reference to a connection that is missing or not granted, or a malformed one, fails naming it, and \
                nothing is written.
                """
        )

        @Option(name: .customLong("from-file"), help: "Read the spec from this file instead of stdin.") var fromFile:
            String?
        @OptionGroup var step: StepOptions

        func run() throws {
            try reporting {
                let data: Data
                if let fromFile {
                    guard let read = FileManager.default.contents(atPath: fromFile) else {
                        throw CofferError(.invalidArgument, "cannot read \(fromFile)")
                    }
                    data = read
                } else {
                    data = FileHandle.standardInput.readDataToEndOfFile()
                }
                guard data.count <= FieldInput.maxInputBytes, let text = String(data: data, encoding: .utf8) else {
                    throw CofferError(.invalidArgument, "the step spec must be UTF-8 YAML or JSON of at most 8 MiB")
                }
                let isJSON = text.drop { $0.isWhitespace }.first.map { $0 == "{" || $0 == "[" } ?? false
                var resolver = SpecResolver()
                if isJSON {
                    guard let object = try? JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed])
                    else {
                        throw CofferError(.invalidArgument, "the step spec is not valid JSON")
                    }
                    try resolver.collect(json: object)
                    resolver.connections = try step.fetch(resolver.wanted)
                    let resolved = try resolver.resolve(json: object)
                    let out = try? JSONSerialization.data(
                        withJSONObject: resolved,
                        options: [.prettyPrinted, .sortedKeys, .fragmentsAllowed]
                    )
                    FileHandle.standardOutput.write((out ?? Data()) + Data("\n".utf8))
                } else {
                    let node: Node?
                    do { node = try Yams.compose(yaml: text) } catch {
                        throw CofferError(.invalidArgument, "the step spec is not valid YAML")
                    }
                    guard let node else { return }
                    try resolver.collect(yaml: node)
                    resolver.connections = try step.fetch(resolver.wanted)
                    let resolved = try resolver.resolve(yaml: node)
                    do { print(try Yams.serialize(node: resolved), terminator: "") } catch {
                        throw CofferError(.internal, "cannot write the resolved spec as YAML")
                    }
                }
            }
        }
    }

    struct Exec: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run a command with connections in its environment.",
            discussion: """
                --connection TYPE/NAME sets the variables its type maps fields to (for aws: AWS_ACCESS_KEY_ID, \
                AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION); --env VAR=TYPE/NAME#FIELD sets one variable \
                from one field, and overrides a connection's mapping of it. coffer then replaces itself with the \
                command (signals and the exit status are the command's); COFFER_TOKEN is not passed on. Nothing is \
                printed. With --on-change, coffer stays: it runs the command as its child, watches the connections \
                it was given, and on a change restarts it with the new values (restart: SIGTERM, then SIGKILL after \
                10 s) or sends it a signal (signal:NAME; the environment of a running process cannot change, so the \
                command must read what it needs again); when a connection is deleted or no longer granted, or the \
                token ends, it stops the command and exits with the error's status; it forwards SIGTERM, SIGINT and \
                SIGHUP, and exits with the command's status when the command exits by itself.
                """
        )

        @Option(name: .customLong("connection"), help: "A connection whose typed variables to set.")
        var connections: [String] = []
        @Option(name: .customLong("env"), help: "VAR=TYPE/NAME#FIELD: one variable from one field.") var env: [String] =
            []
        @Option(
            name: .customLong("on-change"),
            help:
                "restart, or signal:NAME (such as signal:HUP): keep watching and restart or signal the command when a connection it was given changes."
        )
        var onChange: String?
        @OptionGroup var step: StepOptions
        @Argument(parsing: .postTerminator, help: "The command and its arguments, after --.") var command: [String] = []

        func run() throws {
            try reporting {
                guard let program = command.first else {
                    throw CofferError(.invalidArgument, "name the command to run after --")
                }
                let refs = try connections.map { text throws(CofferError) in try ConnectionRef(parsing: text) }
                var singles: [(variable: String, ref: ConnectionRef, field: FieldName)] = []
                for assignment in env {
                    guard let equals = assignment.firstIndex(of: "="), let hash = assignment.lastIndex(of: "#"),
                        equals < hash
                    else { throw CofferError(.invalidArgument, "--env takes VAR=TYPE/NAME#FIELD") }
                    let variable = String(assignment[..<equals])
                    guard Self.isVariableName(variable) else {
                        throw CofferError(
                            .invalidArgument,
                            "\(Validation.quoted(variable)) is not an environment variable name"
                        )
                    }
                    singles.append(
                        (
                            variable,
                            try ConnectionRef(parsing: String(assignment[assignment.index(after: equals)..<hash])),
                            try FieldName(String(assignment[assignment.index(after: hash)...]))
                        )
                    )
                }
                guard !refs.isEmpty || !singles.isEmpty else {
                    throw CofferError(.invalidArgument, "name at least one --connection or --env")
                }
                let plan = ExecPlan(connections: refs, singles: singles)
                if let onChange {
                    let mode = try ExecSupervisor.Mode(parsing: onChange)
                    let status = try ExecSupervisor(plan: plan, step: step, command: command, mode: mode).run()
                    Foundation.exit(status)
                }
                let variables = try plan.variables(from: try step.fetch(plan.wanted))
                unsetenv("COFFER_TOKEN")
                for (name, value) in variables { setenv(name, value, 1) }
                var argv = command.map { strdup($0) } + [nil]
                execvp(program, &argv)
                let error = errno
                throw CofferError(
                    .failedPrecondition,
                    "cannot run \(Validation.quoted(program)): \(String(cString: strerror(error)))"
                )
            }
        }

        static func isVariableName(_ text: String) -> Bool {
            guard let first = text.unicodeScalars.first,
                first == "_" || (first.isASCII && first.properties.isAlphabetic)
            else {
                return false
            }
            return text.unicodeScalars.allSatisfy {
                $0 == "_" || ($0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0)))
            }
        }
    }
}

extension Coffer {
    struct Watch: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Watch connections on the worker socket; print each event as a JSON line.",
            discussion: """
                Watches the connections named (none: every connection the token's workflow is granted, now or \
                later) and prints one JSON object a line: started, changed (with the version, and the fields with \
                --values; each such delivery is audited as a Get), deleted, inaccessible (the grant was revoked), \
                heartbeat, restart (get what you need again), ended (with the reason). --after resumes after a \
                revision seen before. With --reconnect, coffer watches again after the last revision it printed \
                whenever the watch ends for a reason other than the token's end; otherwise it exits when it ends \
                (status 0 when cofferd ended it, the error's status when it refused).
                """
        )

        @Argument(help: "The connections, type/name.") var connections: [String] = []
        @Flag(help: "Send the values with each change.") var values = false
        @Option(help: "Resume after this revision.") var after: UInt64 = 0
        @Flag(help: "Watch again after the last revision when the watch ends or the connection drops.")
        var reconnect = false
        @OptionGroup var step: StepOptions

        func run() throws {
            try reporting {
                let refs = try connections.map { text throws(CofferError) in try ConnectionRef(parsing: text) }
                let token = try step.token()
                var last = after
                while true {
                    var ending = ""
                    do throws(CofferError) {
                        let worker = try step.sockets.worker()
                        try worker.watch(refs, token: token, withValues: values, after: last) {
                            event throws(CofferError) in
                            if event.kind != .ended { last = max(last, event.revision) }
                            if event.kind == .ended { ending = event.reason }
                            printJSON(try Self.object(event), compact: true)
                            return true
                        }
                    } catch {
                        guard reconnect, error.code == .unavailable || error.code == .deadlineExceeded else {
                            throw error
                        }
                        ending = error.message
                    }
                    guard reconnect, !ending.hasPrefix("the token") else { return }
                    usleep(500_000)
                }
            }
        }

        static func object(_ event: WatchEvent) throws(CofferError) -> [String: Any] {
            var object: [String: Any] = ["event": event.kind.rawValue, "revision": event.revision]
            if let connection = event.connection { object["connection"] = connection.description }
            if event.kind == .changed || event.kind == .deleted { object["version"] = event.version }
            if !event.reason.isEmpty { object["reason"] = event.reason }
            if let values = event.values {
                var fields: [String: String] = [:]
                for (name, value) in try values.textFields() { fields[name.rawValue] = value }
                object["fields"] = fields
                object["secret"] = values.secretFieldNames.map(\.rawValue)
            }
            return object
        }
    }
}

/// Finds the connection references of a step spec and replaces them, once the connections were fetched.
struct SpecResolver {
    private(set) var wanted: [ConnectionRef] = []
    var connections: [ConnectionRef: ConnectionValues] = [:]

    private mutating func want(_ ref: ConnectionRef) { if !wanted.contains(ref) { wanted.append(ref) } }

    // MARK: YAML

    mutating func collect(yaml node: Node) throws(CofferError) {
        switch node {
        case .scalar(let scalar):
            for found in try ConnectionReference.scan(scalar.string) { want(found.reference.ref) }
        case .mapping(let mapping):
            if let ref = try Self.taggedReference(mapping) { return want(ref) }
            for (key, value) in mapping {
                try collect(yaml: key)
                try collect(yaml: value)
            }
        case .sequence(let sequence):
            for item in sequence { try collect(yaml: item) }
        default:
            return
        }
    }

    func resolve(yaml node: Node) throws(CofferError) -> Node {
        switch node {
        case .scalar(let scalar):
            return try resolve(
                text: scalar.string,
                whole: { map in
                    Node(
                        map.sorted { $0.key < $1.key }.map { (Node($0.key), Node($0.value, .implicit, .doubleQuoted)) }
                    )
                },
                text: { Node($0, .implicit, .doubleQuoted) }
            ) ?? node
        case .mapping(let mapping):
            if let ref = try Self.taggedReference(mapping) {
                let map = try fields(of: ConnectionReference(ref: ref))
                return Node(
                    map.sorted { $0.key < $1.key }.map { (Node($0.key), Node($0.value, .implicit, .doubleQuoted)) }
                )
            }
            var pairs: [(Node, Node)] = []
            for (key, value) in mapping { pairs.append((key, try resolve(yaml: value))) }
            return Node(pairs, mapping.tag, mapping.style)
        case .sequence(let sequence):
            var items: [Node] = []
            for item in sequence { items.append(try resolve(yaml: item)) }
            return Node(items, sequence.tag, sequence.style)
        default:
            return node
        }
    }

    /// The connection a `!Connection { type: TYPE, name: NAME }` mapping names, or nil for another mapping.
    static func taggedReference(_ mapping: Node.Mapping) throws(CofferError) -> ConnectionRef? {
        guard mapping.tag.description == "!Connection" else { return nil }
        var type: String?
        var name: String?
        for (key, value) in mapping {
            switch key.string {
            case "type": type = value.string
            case "name": name = value.string
            default: throw CofferError(.invalidArgument, "!Connection takes only type and name")
            }
        }
        guard let type, let name else {
            throw CofferError(
                .invalidArgument,
                "!Connection needs a type and a name: !Connection { type: aws, name: my-aws-account }"
            )
        }
        do { return try ConnectionRef(type: type, name: name) } catch {
            throw CofferError(.invalidArgument, "!Connection names a malformed connection: \(error.message)")
        }
    }

    // MARK: JSON

    mutating func collect(json value: Any) throws(CofferError) {
        if let text = value as? String {
            for found in try ConnectionReference.scan(text) { want(found.reference.ref) }
        } else if let object = value as? [String: Any] {
            for (_, item) in object { try collect(json: item) }
        } else if let array = value as? [Any] {
            for item in array { try collect(json: item) }
        }
    }

    func resolve(json value: Any) throws(CofferError) -> Any {
        if let text = value as? String {
            return try resolve(text: text, whole: { $0 }, text: { $0 }) ?? text
        } else if let object = value as? [String: Any] {
            var result: [String: Any] = [:]
            for (key, item) in object { result[key] = try resolve(json: item) }
            return result
        } else if let array = value as? [Any] {
            var result: [Any] = []
            for item in array { result.append(try resolve(json: item)) }
            return result
        }
        return value
    }

    // MARK: Both

    /// A string's references replaced: a whole-connection reference that is the whole string becomes the map of
    /// its fields; field references are put into the text. Nil when the string holds no reference.
    private func resolve<T>(
        text: String,
        whole: ([String: String]) -> T,
        text make: (String) -> T
    ) throws(CofferError) -> T? {
        let found = try ConnectionReference.scan(text)
        guard !found.isEmpty else { return nil }
        if found.count == 1, found[0].reference.field == nil {
            guard found[0].range == text.startIndex..<text.endIndex else {
                throw CofferError(
                    .invalidArgument,
                    "reference ${connections.\(found[0].reference.ref.type).'\(found[0].reference.ref.name)'} stands for a whole connection, so it must be the whole value; cite one field with .FIELD"
                )
            }
            return whole(try fields(of: found[0].reference))
        }
        var result = ""
        var position = text.startIndex
        for (range, reference) in found {
            result += text[position..<range.lowerBound]
            guard let field = reference.field else {
                throw CofferError(
                    .invalidArgument,
                    "reference ${connections.\(reference.ref.type).'\(reference.ref.name)'} stands for a whole connection, so it must be the whole value; cite one field with .FIELD"
                )
            }
            guard let value = try fields(of: reference)[field.rawValue] else {
                throw CofferError(.notFound, "connection \(reference.ref) has no field \(field)")
            }
            result += value
            position = range.upperBound
        }
        result += text[position...]
        return make(result)
    }

    private func fields(of reference: ConnectionReference) throws(CofferError) -> [String: String] {
        guard let values = connections[reference.ref] else {
            throw CofferError(.internal, "connection \(reference.ref) was not fetched")
        }
        var result: [String: String] = [:]
        for (name, value) in try values.textFields() { result[name.rawValue] = value }
        return result
    }
}

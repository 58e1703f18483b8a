import ArgumentParser
import CofferClient
import CofferConnections
import CofferCore
import CofferCrypto
import Foundation

/// Where a put or an overwrite reads its fields: a JSON object of strings from a file or stdin, or, when
/// stdin is a terminal, each field of the type asked for in turn (secret ones without echo).
struct FieldInput: ParsableArguments {
    @Option(name: .customLong("from-file"), help: "Read the JSON object of fields from this file instead of stdin.")
    var fromFile: String?

    /// The largest input read: a connection at its limits, JSON-escaped.
    static let maxInputBytes = 8 * 1024 * 1024

    /// The fields, read as JSON, or asked for when stdin is a terminal and no file is given.
    func read(asking variant: Variant?, for ref: ConnectionRef) throws(CofferError) -> [FieldName: SecretBytes] {
        if fromFile == nil, isatty(STDIN_FILENO) == 1, let variant {
            return try Prompter().ask(variant, for: ref)
        }
        return try readJSON()
    }

    func readJSON() throws(CofferError) -> [FieldName: SecretBytes] {
        let source = fromFile ?? "stdin"
        let data: Data
        do {
            if let fromFile {
                data = try Data(contentsOf: URL(fileURLWithPath: fromFile))
            } else {
                if isatty(STDIN_FILENO) == 1 {
                    FileHandle.standardError.write(
                        Data("coffer: reading the fields as a JSON object from stdin; end with Ctrl-D\n".utf8)
                    )
                }
                data = FileHandle.standardInput.readDataToEndOfFile()
            }
        } catch {
            throw CofferError(.invalidArgument, "cannot read \(source)")
        }
        guard data.count <= Self.maxInputBytes else {
            throw CofferError(.invalidArgument, "\(source) is larger than \(Self.maxInputBytes) bytes")
        }
        // Never quote the input in an error: it holds secret values.
        let shape =
            "\(source) must hold a JSON object of strings, such as {\"username\": \"...\", \"password\": \"...\"}"
        guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw CofferError(.invalidArgument, shape)
        }
        guard !object.isEmpty else { throw CofferError(.invalidArgument, "\(source) names no fields") }
        var values: [FieldName: SecretBytes] = [:]
        for (name, value) in object {
            guard let text = value as? String else {
                throw CofferError(.invalidArgument, "field \(try FieldName(name)) is not a string; \(shape)")
            }
            values[try FieldName(name)] = SecretBytes(utf8: text)
        }
        return values
    }
}

/// A typed connection's fields split as the wire carries them: public ones in clear, every other one sealed
/// (a field the type does not know is sealed too, and cofferd refuses it by name).
struct SplitFields {
    var publicFields: [FieldName: String] = [:]
    var secretFields: [FieldName: SecretBytes] = [:]

    init(_ values: [FieldName: SecretBytes], variant: Variant?) {
        for (name, value) in values {
            if let spec = variant?.spec(for: name), !spec.secret,
                let text = value.withUnsafeBytes({ String(validating: $0, as: UTF8.self) })
            {
                publicFields[name] = text
            } else {
                secretFields[name] = value
            }
        }
    }
}

extension CofferAdminClient {
    /// The type `ref` names and the variant a write would use (`variant`, or the type's default); nil for a
    /// type cofferd does not know (the write is sent sealed, and cofferd says what is wrong).
    func variant(for ref: ConnectionRef, named variant: String?) throws(CofferError) -> Variant? {
        guard let type = try types().first(where: { $0.name == ref.type }) else { return nil }
        guard let variant else { return type.defaultVariant }
        guard let found = type.variant(named: variant) else {
            throw CofferError(
                .invalidArgument,
                "type \(type.name) has no variant \(variant); its variants are \(type.variants.map(\.name).joined(separator: ", "))"
            )
        }
        return found
    }
}

/// Asks for each field of a variant on the terminal: secret ones without echo, optional ones may be left
/// empty, families (header.NAME) and the generic type's fields by name until an empty name.
struct Prompter {
    func ask(_ variant: Variant, for ref: ConnectionRef) throws(CofferError) -> [FieldName: SecretBytes] {
        say("coffer: \(ref), variant \(variant.name): \(variant.description)")
        say("coffer: secret fields are read without echo; leave an optional field empty to skip it")
        var values: [FieldName: SecretBytes] = [:]
        for spec in variant.fields where !spec.generated {
            if spec.isFamily || spec.name == "*" {
                let prefix = spec.name == "*" ? "" : spec.name
                while true {
                    let label = prefix.isEmpty ? "field name" : "\(prefix)NAME"
                    guard let suffix = line("\(label) (\(spec.description) empty to go on): ", echo: true),
                        !suffix.isEmpty
                    else { break }
                    let name = try FieldName(prefix + suffix)
                    if let value = line("\(name)\(spec.secret ? " (secret)" : ""): ", echo: !spec.secret),
                        !value.isEmpty
                    {
                        values[name] = SecretBytes(utf8: value)
                    }
                }
                continue
            }
            let name = try FieldName(spec.name)
            let marks = [spec.secret ? "secret" : nil, spec.required ? nil : "optional"].compactMap { $0 }
            let label = "\(name)\(marks.isEmpty ? "" : " (\(marks.joined(separator: ", ")))") - \(spec.description): "
            while true {
                guard let value = line(label, echo: !spec.secret) else {
                    throw CofferError(.invalidArgument, "stdin ended before field \(name)")
                }
                if !value.isEmpty {
                    values[name] = SecretBytes(utf8: value)
                    break
                }
                if !spec.required { break }
                say("coffer: \(name) is required")
            }
        }
        return values
    }

    /// One secret value, asked for without echo.
    func secret(_ name: FieldName) throws(CofferError) -> SecretBytes {
        guard let value = line("\(name) (secret): ", echo: false), !value.isEmpty else {
            throw CofferError(.invalidArgument, "no value given for field \(name)")
        }
        return SecretBytes(utf8: value)
    }

    private func say(_ text: String) { FileHandle.standardError.write(Data((text + "\n").utf8)) }

    /// One line from the terminal, echo off when asked; nil at the end of input.
    private func line(_ prompt: String, echo: Bool) -> String? {
        FileHandle.standardError.write(Data(prompt.utf8))
        var saved = termios()
        let terminal = tcgetattr(STDIN_FILENO, &saved) == 0
        if !echo && terminal {
            var quiet = saved
            quiet.c_lflag &= ~tcflag_t(ECHO)
            tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet)
        }
        defer {
            if !echo && terminal {
                tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved)
                FileHandle.standardError.write(Data("\n".utf8))
            }
        }
        return readLine(strippingNewline: true)
    }
}

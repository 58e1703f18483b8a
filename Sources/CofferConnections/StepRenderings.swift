import CofferCore
import CofferCrypto
import Foundation

// How a step uses a connection it got: its fields as text (for JSON and Relay's `${connections...}`), the
// environment variables its type maps them to (`coffer exec`), and a curl config (`curl -K -`) for an http
// connection. Rendered in the step's own process; nothing here logs or throws a value.

extension ConnectionValues {
    /// Every field's value as text; FAILED_PRECONDITION naming a field that is not UTF-8.
    public func textFields() throws(CofferError) -> [FieldName: String] {
        var result: [FieldName: String] = [:]
        for name in fieldNames {
            guard let text = text(of: name) else {
                throw CofferError(
                    .failedPrecondition,
                    "field \(name) of \(ref) is not UTF-8 text; print it with --field \(name)"
                )
            }
            result[name] = text
        }
        return result
    }

    /// The secret fields' names, sorted: what a runner masks in its logs.
    public var secretFieldNames: [FieldName] { fields.keys.sorted() }

    /// `coffer get`'s JSON: the connection, its type and variant, every field, and which fields are secret.
    public func typedJSON() throws(CofferError) -> [String: Any] {
        var fields: [String: String] = [:]
        for (name, value) in try textFields() { fields[name.rawValue] = value }
        return [
            "connection": ref.description, "type": servedType,
            "variant": shape.variant.isEmpty ? "default" : shape.variant,
            "version": version, "fields": fields, "secret": secretFieldNames.map(\.rawValue),
        ]
    }

    /// The environment variables its type maps its fields to, sorted by name; FAILED_PRECONDITION when the
    /// type maps none.
    public func environmentVariables() throws(CofferError) -> [(name: String, value: String)] {
        guard !environment.isEmpty else {
            throw CofferError(
                .failedPrecondition,
                "type \(servedType) maps no field of \(ref) to an environment variable; name them with --env VAR=\(ref)#FIELD"
            )
        }
        var result: [(name: String, value: String)] = []
        for (field, variable) in environment {
            guard let text = text(of: field) else {
                throw CofferError(.failedPrecondition, "field \(field) of \(ref) is not UTF-8 text")
            }
            result.append((variable, text))
        }
        return result.sorted { $0.name < $1.name }
    }

    /// A curl config (for `curl -K -`) that sends a request to the base URL (with `path` appended), with the
    /// connection's URL parameters, headers and auth: so no secret reaches curl's argv.
    public func curlConfig(path: String? = nil) throws(CofferError) -> String {
        guard servedType == "http", let base = shape.publicFields[try FieldName("baseURL")] else {
            throw CofferError(
                .failedPrecondition,
                "a curl config needs an http connection; \(ref) is of type \(servedType)"
            )
        }
        let texts = try textFields()
        func render(_ template: String) throws(CofferError) -> String {
            try Template(parsing: template).render { name throws(CofferError) in
                guard let value = fields[name].flatMap({ _ in texts[name] }) else {
                    throw CofferError(.failedPrecondition, "a template of \(ref) cites \(name), which it does not set")
                }
                return value
            }
        }
        var url = base
        if let path, !path.isEmpty {
            url = (url.hasSuffix("/") ? String(url.dropLast()) : url) + (path.hasPrefix("/") ? path : "/" + path)
        }
        var query: [String] = []
        var headers: [(String, String)] = []
        for (name, value) in shape.publicFields.sorted(by: { $0.key < $1.key }) {
            if name.rawValue.hasPrefix("param.") {
                query.append(
                    Self.percentEncoded(String(name.rawValue.dropFirst(6))) + "="
                        + Self.percentEncoded(try render(value))
                )
            } else if name.rawValue.hasPrefix("header.") {
                headers.append((String(name.rawValue.dropFirst(7)), try render(value)))
            }
        }
        if !query.isEmpty { url += (url.contains("?") ? "&" : "?") + query.joined(separator: "&") }
        var lines = ["url = \(Self.quoted(url))"]
        let hasAuthorization = headers.contains { $0.0.lowercased() == "authorization" }
        if shape.variant == "token", !hasAuthorization {
            let tokens = fields.keys.filter { $0.rawValue == "token" || $0.rawValue.hasPrefix("token.") }
            let chosen = tokens.first { $0.rawValue == "token" } ?? (tokens.count == 1 ? tokens.first : nil)
            if let chosen, let token = texts[chosen] { headers.insert(("Authorization", "Bearer " + token), at: 0) }
        }
        for (name, value) in headers { lines.append("header = \(Self.quoted(name + ": " + value))") }
        if shape.variant == "basic", let user = texts[try FieldName("username")],
            let password = texts[try FieldName("password")]
        {
            lines.append("user = \(Self.quoted(user + ":" + password))")
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// A value in a curl config's double quotes: backslash and quote escaped (values hold no newline: the
    /// type's check refuses control characters).
    static func quoted(_ text: String) -> String {
        "\"" + text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
    }

    static func percentEncoded(_ text: String) -> String {
        var allowed = CharacterSet.alphanumerics.intersection(
            CharacterSet(charactersIn: Unicode.Scalar(0)...Unicode.Scalar(127))
        )
        allowed.insert(charactersIn: "-._~")
        return text.addingPercentEncoding(withAllowedCharacters: allowed) ?? ""
    }
}

/// A value for a POSIX shell, single-quoted: `eval "$(coffer get ... --format env)"`.
public func shellQuoted(_ text: String) -> String {
    "'" + text.replacingOccurrences(of: "'", with: "'\\''") + "'"
}

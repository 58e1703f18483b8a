import CofferCore

/// A public template, such as a header's value `Bearer {{ token }}`: literal text and citations of the
/// connection's citable fields. Parsed when a connection is written (each citation must name a field the
/// connection sets) and rendered only by the step that got the connection.
public struct Template: Sendable, Equatable {
    public enum Part: Sendable, Equatable {
        case literal(String)
        case citation(FieldName)
    }

    public let parts: [Part]

    /// Parses `text`; the error says what is wrong, never quoting the text.
    public init(parsing text: String) throws(CofferError) {
        var parts: [Part] = []
        var rest = Substring(text)
        while let open = rest.range(of: "{{") {
            let literal = rest[..<open.lowerBound]
            if literal.contains("}}") { throw CofferError(.invalidArgument, "has a }} without its {{") }
            if !literal.isEmpty { parts.append(.literal(String(literal))) }
            guard let close = rest[open.upperBound...].range(of: "}}") else {
                throw CofferError(.invalidArgument, "has a {{ without its }}")
            }
            let name = rest[open.upperBound..<close.lowerBound].trimmingCharacters(in: .whitespaces)
            guard let field = try? FieldName(name) else {
                throw CofferError(.invalidArgument, "cites something that is not a field name inside {{ }}")
            }
            parts.append(.citation(field))
            rest = rest[close.upperBound...]
        }
        if rest.contains("}}") { throw CofferError(.invalidArgument, "has a }} without its {{") }
        if !rest.isEmpty { parts.append(.literal(String(rest))) }
        self.parts = parts
    }

    public var citations: [FieldName] {
        parts.compactMap { if case .citation(let name) = $0 { name } else { nil } }
    }

    /// The text with each citation replaced by `value(name)`.
    public func render(_ value: (FieldName) throws(CofferError) -> String) throws(CofferError) -> String {
        var out = ""
        for part in parts {
            switch part {
            case .literal(let text): out += text
            case .citation(let name): out += try value(name)
            }
        }
        return out
    }
}

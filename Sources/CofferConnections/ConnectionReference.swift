import CofferCore
import Foundation

/// A reference to a connection in a step spec, as Puppet Relay writes it: `${connections.aws.'my-aws-account'}`
/// (the whole connection, its fields as a map) or `${connections.aws.'my-aws-account'.accessKeyID}` (one
/// field), or the tag form `!Connection { type: aws, name: my-aws-account }`.
public struct ConnectionReference: Sendable, Equatable {
    public var ref: ConnectionRef
    /// One field, or nil for the whole connection.
    public var field: FieldName?

    public init(ref: ConnectionRef, field: FieldName? = nil) {
        self.ref = ref
        self.field = field
    }

    /// Where each reference stands in `text`, in order. A `${connections.` that does not parse is
    /// INVALID_ARGUMENT quoting the reference (never anything else of the text).
    public static func scan(
        _ text: String
    ) throws(CofferError) -> [(range: Range<String.Index>, reference: ConnectionReference)] {
        var found: [(range: Range<String.Index>, reference: ConnectionReference)] = []
        var searchFrom = text.startIndex
        while let start = text.range(of: "${connections.", range: searchFrom..<text.endIndex) {
            guard let end = text.range(of: "}", range: start.upperBound..<text.endIndex) else {
                throw CofferError(.invalidArgument, "a reference ${connections. ... has no closing }")
            }
            let range = start.lowerBound..<end.upperBound
            let body = String(text[start.upperBound..<end.lowerBound])
            found.append((range, try parse(body, quoting: String(text[range]))))
            searchFrom = end.upperBound
        }
        return found
    }

    static let grammar = try! NSRegularExpression(
        pattern:
            #"\A([a-z][a-z0-9_-]*)\.(?:'([^']+)'|"([^"]+)"|([A-Za-z0-9][A-Za-z0-9_-]*))(?:\.(?:'([^']+)'|([A-Za-z_][A-Za-z0-9_-]*)))?\z"#
    )

    /// `TYPE.'NAME'` or `TYPE.'NAME'.FIELD`.
    static func parse(_ body: String, quoting whole: String) throws(CofferError) -> ConnectionReference {
        let malformed = CofferError(
            .invalidArgument,
            "reference \(Validation.quoted(whole)) is malformed; write ${connections.TYPE.'NAME'} or ${connections.TYPE.'NAME'.FIELD}"
        )
        let range = NSRange(body.startIndex..., in: body)
        guard let match = grammar.firstMatch(in: body, range: range) else { throw malformed }
        func group(_ index: Int) -> String? {
            Range(match.range(at: index), in: body).map { String(body[$0]) }
        }
        guard let type = group(1), let name = group(2) ?? group(3) ?? group(4) else { throw malformed }
        do {
            let ref = try ConnectionRef(type: type, name: name)
            let field = try (group(5) ?? group(6)).map { text throws(CofferError) in try FieldName(text) }
            return ConnectionReference(ref: ref, field: field)
        } catch {
            throw malformed
        }
    }
}

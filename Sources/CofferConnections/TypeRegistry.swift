import CofferCore
import CofferCrypto
import Foundation

/// The connection types a cofferd knows: the built-in ones and those an operator declared in a file
/// (`cofferd serve --types FILE`, a JSON object `{"types": [...]}` of `ConnectionType`s).
public struct TypeRegistry: Sendable {
    private let byName: [String: ConnectionType]
    /// Per type and variant, the environment variable of each field that has one (no family has one).
    private let variables: [String: [String: [String: String]]]

    /// The built-in types only.
    public static let builtIn = try! TypeRegistry(adding: [])

    /// The built-in types and `extra`, each checked: a valid name no other type has, a version, variants with
    /// distinct names, fields with valid names, patterns that compile.
    public init(adding extra: [ConnectionType]) throws(CofferError) {
        var byName: [String: ConnectionType] = [:]
        for type in BuiltInTypes.all + extra {
            guard byName[type.name] == nil else {
                throw CofferError(.invalidArgument, "type \(type.name) is declared twice (or is built in)")
            }
            try Self.validate(type)
            byName[type.name] = type
        }
        self.byName = byName
        variables = byName.mapValues { type in
            Dictionary(
                uniqueKeysWithValues: type.variants.map { variant in
                    (
                        variant.name,
                        Dictionary(
                            variant.fields.compactMap { field in field.environment.map { (field.name, $0) } },
                            uniquingKeysWith: { first, _ in first }
                        )
                    )
                }
            )
        }
    }

    /// The built-in types and those declared in the JSON file at `path`.
    public static func load(file path: String) throws(CofferError) -> TypeRegistry {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw CofferError(.failedPrecondition, "cannot read the types file \(path)")
        }
        struct File: Decodable { var types: [ConnectionType] }
        let file: File
        do {
            file = try JSONDecoder().decode(File.self, from: data)
        } catch {
            throw CofferError(
                .invalidArgument,
                "the types file \(path) is not a JSON object {\"types\": [...]} of connection types: \(Self.describe(error))"
            )
        }
        do {
            return try TypeRegistry(adding: file.types)
        } catch {
            throw CofferError(.invalidArgument, "the types file \(path): \(error.message)")
        }
    }

    public func type(named name: String) -> ConnectionType? { byName[name] }

    /// Every type, by name.
    public var all: [ConnectionType] { byName.values.sorted { $0.name < $1.name } }

    private static func validate(_ type: ConnectionType) throws(CofferError) {
        _ = try ConnectionRef(type: type.name, name: "x")
        guard type.version >= 1 else {
            throw CofferError(.invalidArgument, "type \(type.name) needs a version of 1 or more")
        }
        guard !type.variants.isEmpty else { throw CofferError(.invalidArgument, "type \(type.name) has no variant") }
        var variants = Set<String>()
        for variant in type.variants {
            let place = "variant \(variant.name) of type \(type.name)"
            guard !variant.name.isEmpty, variants.insert(variant.name).inserted else {
                throw CofferError(.invalidArgument, "type \(type.name) has an empty or repeated variant name")
            }
            var names = Set<String>()
            for field in variant.fields {
                guard names.insert(field.name).inserted else {
                    throw CofferError(.invalidArgument, "field \(field.name) appears twice in \(place)")
                }
                if field.name != "*" {
                    _ = try FieldName(field.isFamily ? field.name + "x" : field.name)
                }
                if let pattern = field.pattern, (try? NSRegularExpression(pattern: pattern)) == nil {
                    throw CofferError(
                        .invalidArgument,
                        "the pattern of field \(field.name) in \(place) does not compile"
                    )
                }
                if (field.isFamily || field.name == "*") && field.environment != nil {
                    throw CofferError(
                        .invalidArgument,
                        "family \(field.name) in \(place) cannot name one environment variable"
                    )
                }
                if field.generated && (field.secret || field.required) {
                    throw CofferError(
                        .invalidArgument,
                        "generated field \(field.name) in \(place) must be public and optional"
                    )
                }
            }
            for name in variant.requiresOneOf where !names.contains(name) {
                throw CofferError(.invalidArgument, "\(place) requires one of \(name), which it does not declare")
            }
        }
    }

    private static func describe(_ error: any Error) -> String {
        switch error as? DecodingError {
        case .keyNotFound(let key, let context)?:
            "\(context.codingPath.map(\.stringValue).joined(separator: ".")) lacks \(key.stringValue)"
        case .typeMismatch(_, let context)?, .valueNotFound(_, let context)?, .dataCorrupted(let context)?:
            "at \(context.codingPath.map(\.stringValue).joined(separator: ".")): \(context.debugDescription)"
        default: "malformed JSON"
        }
    }
}

extension TypeRegistry {
    /// The environment variables the connection's type maps its fields to (`AWS_ACCESS_KEY_ID`); none for an
    /// untyped connection.
    public func environment(of values: ConnectionValues) -> [FieldName: String] {
        guard !values.shape.isUntyped, let mapped = variables[values.ref.type]?[values.shape.variant],
            !mapped.isEmpty
        else { return [:] }
        var result: [FieldName: String] = [:]
        for name in values.fields.keys { if let variable = mapped[name.rawValue] { result[name] = variable } }
        for name in values.shape.publicFields.keys {
            if let variable = mapped[name.rawValue] { result[name] = variable }
        }
        return result
    }
}

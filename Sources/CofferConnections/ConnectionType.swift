import CofferCore

/// A connection type: what an admin chooses when creating a connection ("choose an integration schema"), and
/// what cofferd checks every write of such a connection against. Versioned; each version has one or more auth
/// variants, each with its fields. Built in (`BuiltInTypes`) or declared by operators in a file cofferd loads
/// at start (`TypeRegistry.load`), which decodes this same shape from JSON.
public struct ConnectionType: Sendable, Codable, Equatable {
    /// The first part of a connection's name: `aws` in `aws/my-aws-account`.
    public var name: String
    /// Raised when the type changes; each connection records the version it was written under.
    public var version: UInt32
    public var description: String
    /// The first is the default, used when a write names none.
    public var variants: [Variant]

    public init(name: String, version: UInt32, description: String, variants: [Variant]) {
        self.name = name
        self.version = version
        self.description = description
        self.variants = variants
    }

    enum CodingKeys: String, CodingKey { case name, version, description, variants }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        version = try c.decode(UInt32.self, forKey: .version)
        description = try c.decodeIfPresent(String.self, forKey: .description) ?? ""
        variants = try c.decode([Variant].self, forKey: .variants)
    }

    public var defaultVariant: Variant { variants[0] }

    public func variant(named name: String) -> Variant? { variants.first { $0.name == name } }
}

/// One way of authenticating a type's connections (`access-key` or `assume-role` for `aws`), with its fields.
public struct Variant: Sendable, Codable, Equatable {
    public var name: String
    public var description: String
    public var fields: [FieldSpec]
    /// At least one of these fields (or members of these families) must be set.
    public var requiresOneOf: [String]

    public init(name: String, description: String, fields: [FieldSpec], requiresOneOf: [String] = []) {
        self.name = name
        self.description = description
        self.fields = fields
        self.requiresOneOf = requiresOneOf
    }

    enum CodingKeys: String, CodingKey { case name, description, fields, requiresOneOf }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        description = try c.decodeIfPresent(String.self, forKey: .description) ?? ""
        fields = try c.decode([FieldSpec].self, forKey: .fields)
        requiresOneOf = try c.decodeIfPresent([String].self, forKey: .requiresOneOf) ?? []
    }

    /// The spec of field `name`: its own, or its family's (`header.` for `header.Accept`).
    public func spec(for name: FieldName) -> FieldSpec? {
        fields.first { !$0.isFamily && $0.name == name.rawValue }
            ?? fields.first { ($0.isFamily || $0.name == "*") && $0.matches(name) }
    }
}

/// What a field may hold.
public enum FieldFormat: String, Sendable, Codable, CaseIterable {
    /// Printable text: no control characters but tab.
    case text
    /// An https URL (http only to a loopback address), without user info or fragment.
    case httpsURL = "https-url"
    /// One or more PEM blocks (`-----BEGIN ...-----`) whose bodies are base64.
    case pem
    /// A PEM or OpenSSH private key.
    case privateKey = "private-key"
    /// A JSON object.
    case json
    /// A Google Cloud service-account key: JSON with type "service_account", client_email and a PEM private_key.
    case serviceAccountKey = "service-account-key"
    /// SSH known_hosts lines: hosts, key type, base64 key.
    case knownHosts = "known-hosts"
    /// Text that may cite the connection's citable fields as `{{ name }}` (and nothing else).
    case template
}

/// One field of a variant, or a family of fields sharing a prefix (`header.` holds `header.Accept`, ...).
public struct FieldSpec: Sendable, Codable, Equatable {
    /// The field's name; a family's ends in `.`.
    public var name: String
    /// Secret fields are sealed, written only, and never shown to admins; public ones are configuration an
    /// admin may read back (a base URL, a region, a username, a header).
    public var secret: Bool
    public var required: Bool
    public var format: FieldFormat
    /// When set, the value must be one of these.
    public var values: [String]
    /// When set, the whole value must match this regular expression.
    public var pattern: String?
    /// When non-zero, at most this many bytes.
    public var maxLength: Int
    /// cofferd makes its value when the connection is created (an AWS external id); a write may not set it.
    public var generated: Bool
    /// Whether a template may cite it (`{{ token }}`).
    public var citable: Bool
    /// The environment variable `coffer exec --connection` sets from it.
    public var environment: String?
    public var description: String

    public init(
        _ name: String,
        secret: Bool,
        required: Bool = true,
        format: FieldFormat = .text,
        values: [String] = [],
        pattern: String? = nil,
        maxLength: Int = 0,
        generated: Bool = false,
        citable: Bool = false,
        environment: String? = nil,
        description: String
    ) {
        self.name = name
        self.secret = secret
        self.required = required
        self.format = format
        self.values = values
        self.pattern = pattern
        self.maxLength = maxLength
        self.generated = generated
        self.citable = citable
        self.environment = environment
        self.description = description
    }

    enum CodingKeys: String, CodingKey {
        case name, secret, required, format, values, pattern, maxLength, generated, citable, environment, description
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        secret = try c.decode(Bool.self, forKey: .secret)
        required = try c.decodeIfPresent(Bool.self, forKey: .required) ?? false
        format = try c.decodeIfPresent(FieldFormat.self, forKey: .format) ?? .text
        values = try c.decodeIfPresent([String].self, forKey: .values) ?? []
        pattern = try c.decodeIfPresent(String.self, forKey: .pattern)
        maxLength = try c.decodeIfPresent(Int.self, forKey: .maxLength) ?? 0
        generated = try c.decodeIfPresent(Bool.self, forKey: .generated) ?? false
        citable = try c.decodeIfPresent(Bool.self, forKey: .citable) ?? false
        environment = try c.decodeIfPresent(String.self, forKey: .environment)
        description = try c.decodeIfPresent(String.self, forKey: .description) ?? ""
    }

    /// Whether this spec names a family of fields (its name ends in `.`).
    public var isFamily: Bool { name.hasSuffix(".") }

    /// Whether `field` is this spec's field or a member of its family; `*` (the generic type's) takes any.
    public func matches(_ field: FieldName) -> Bool {
        if name == "*" { return true }
        return isFamily ? field.rawValue.hasPrefix(name) && field.rawValue.count > name.count : field.rawValue == name
    }
}

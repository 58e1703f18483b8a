/// A connection's address: a type and a name, written `type/name` (`aws/my-aws-account`).
///
/// Both parts are validated on construction, so a `ConnectionRef` is always safe to use as a storage key,
/// in a log line or in an error message.
public struct ConnectionRef: Hashable, Sendable, Comparable, CustomStringConvertible {
    public let type: String
    public let name: String
    /// `type/name`, made once: it is the storage key and appears in every record.
    public let description: String

    /// Up to 32 characters: a lowercase letter, then lowercase letters, digits, `-` and `_`.
    public static let maxTypeLength = 32
    /// Up to 128 characters: a letter or digit, then letters, digits, `.`, `-` and `_`.
    public static let maxNameLength = 128

    public init(type: String, name: String) throws(CofferError) {
        try Validation.check(
            type,
            what: "connection type",
            maxLength: Self.maxTypeLength,
            first: .lowerAlpha,
            rest: .typeRest
        )
        try Validation.check(
            name,
            what: "connection name",
            maxLength: Self.maxNameLength,
            first: .alnum,
            rest: .nameRest
        )
        self.type = type
        self.name = name
        description = type + "/" + name
    }

    /// Parses `type/name`.
    public init(parsing text: String) throws(CofferError) {
        let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.count == 2 else {
            throw CofferError(
                .invalidArgument,
                "connection \(Validation.quoted(text)) is not of the form type/name (aws/my-aws-account)"
            )
        }
        try self.init(type: String(parts[0]), name: String(parts[1]))
    }

    public static func < (lhs: ConnectionRef, rhs: ConnectionRef) -> Bool {
        (lhs.type, lhs.name) < (rhs.type, rhs.name)
    }
}

/// The name of a workflow that grants and tokens are issued to.
public struct WorkflowName: Hashable, Sendable, Comparable, CustomStringConvertible {
    public let rawValue: String

    /// Up to 128 characters: a letter or digit, then letters, digits, `.`, `-` and `_`.
    public static let maxLength = 128

    public init(_ rawValue: String) throws(CofferError) {
        try Validation.check(
            rawValue,
            what: "workflow name",
            maxLength: Self.maxLength,
            first: .alnum,
            rest: .nameRest
        )
        self.rawValue = rawValue
    }

    public var description: String { rawValue }

    public static func < (lhs: WorkflowName, rhs: WorkflowName) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// The name of one field of a connection (`access_key_id`, `token`, `password`).
public struct FieldName: Hashable, Sendable, Comparable, CustomStringConvertible {
    public let rawValue: String

    /// Up to 64 characters: a letter or `_`, then letters, digits, `.`, `-` and `_`.
    public static let maxLength = 64

    public init(_ rawValue: String) throws(CofferError) {
        try Validation.check(
            rawValue,
            what: "field name",
            maxLength: Self.maxLength,
            first: .fieldFirst,
            rest: .nameRest
        )
        self.rawValue = rawValue
    }

    public var description: String { rawValue }

    public static func < (lhs: FieldName, rhs: FieldName) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// An optional run identifier that a token carries into the audit trail (a CI run, a workflow execution).
public struct RunID: Hashable, Sendable, CustomStringConvertible {
    public let rawValue: String

    /// Up to 128 printable ASCII characters without spaces.
    public static let maxLength = 128

    public init(_ rawValue: String) throws(CofferError) {
        try Validation.check(rawValue, what: "run id", maxLength: Self.maxLength, first: .printable, rest: .printable)
        self.rawValue = rawValue
    }

    public var description: String { rawValue }
}

/// The public id of a workflow token: 16 lowercase hex digits. It names the token for revocation and in the
/// audit trail; the token itself is secret and is never a `TokenID`.
public struct TokenID: Hashable, Sendable, Comparable, CustomStringConvertible {
    public let rawValue: String

    /// The id's length in hex digits.
    public static let length = 16

    public init(_ rawValue: String) throws(CofferError) {
        let digits = rawValue.utf8
        guard digits.count == Self.length,
            digits.allSatisfy({ (0x30...0x39).contains($0) || (0x61...0x66).contains($0) })
        else {
            // Never quoted: what was given may be a token pasted in the wrong place.
            throw CofferError(.invalidArgument, "a token id is \(Self.length) lowercase hex digits")
        }
        self.rawValue = rawValue
    }

    public var description: String { rawValue }

    public static func < (lhs: TokenID, rhs: TokenID) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// Validation of names, and quoting of user input for error messages.
public enum Validation {
    /// A set of ASCII characters, tested with two bit masks.
    struct Characters: Sendable {
        let low: UInt64
        let high: UInt64
        /// The characters, for describing the set in an error.
        let members: String

        init(_ members: String) {
            var low: UInt64 = 0
            var high: UInt64 = 0
            for byte in members.utf8 where byte < 128 {
                if byte < 64 { low |= 1 << UInt64(byte) } else { high |= 1 << UInt64(byte - 64) }
            }
            self.low = low
            self.high = high
            self.members = members
        }

        func contains(_ byte: UInt8) -> Bool {
            byte < 64 ? low & (1 << UInt64(byte)) != 0 : byte < 128 && high & (1 << UInt64(byte - 64)) != 0
        }

        static let lowerAlpha = Characters(Validation.lowerAlpha)
        static let alnum = Characters(Validation.alnum)
        static let typeRest = Characters(Validation.lowerAlnum + "-_")
        static let nameRest = Characters(Validation.alnum + ".-_")
        static let fieldFirst = Characters(Validation.alpha + "_")
        static let printable = Characters(String((0x21...0x7e).map { Character(Unicode.Scalar(UInt8($0))) }))
    }

    static let lowerAlpha = "abcdefghijklmnopqrstuvwxyz"
    static let alpha = lowerAlpha + lowerAlpha.uppercased()
    static let digits = "0123456789"
    static let lowerAlnum = lowerAlpha + digits
    static let alnum = alpha + digits

    static func check(
        _ text: String,
        what: String,
        maxLength: Int,
        first: Characters,
        rest: Characters
    )
        throws(CofferError)
    {
        // Every allowed character is ASCII, so the UTF-8 bytes decide; a multi-byte character fails as one
        // byte outside the set.
        let bytes = text.utf8
        guard let head = bytes.first else {
            throw CofferError(.invalidArgument, "\(what) is empty")
        }
        // A token pasted where a name belongs is refused before it can be stored, audited or repeated.
        guard !looksLikeToken(text) else {
            throw CofferError(
                .invalidArgument,
                "\(what) looks like a workflow token, which is never a name; it is not shown or kept"
            )
        }
        let ascii = bytes.allSatisfy { $0 < 128 }
        guard bytes.count <= maxLength || (!ascii && text.unicodeScalars.count <= maxLength) else {
            throw CofferError(
                .invalidArgument,
                "\(what) \(quoted(text)) is longer than \(maxLength) characters"
            )
        }
        guard first.contains(head) else {
            throw CofferError(
                .invalidArgument,
                "\(what) \(quoted(text)) must start with one of \(describe(first.members))"
            )
        }
        if !ascii || !bytes.dropFirst().allSatisfy(rest.contains) {
            let bad = text.unicodeScalars.dropFirst().first { !$0.isASCII || !rest.contains(UInt8($0.value)) }
            throw CofferError(
                .invalidArgument,
                "\(what) \(quoted(text)) has a character that is not allowed (\(quoted(bad.map { String($0) } ?? ""))); allowed: \(describe(rest.members))"
            )
        }
    }

    /// Quotes a user-supplied name for an error message: escaped, and cut short so that a huge input cannot
    /// flood a log.
    /// Input that holds a workflow token (`cft_` and 16 hex digits, pasted into a name by mistake) is never
    /// quoted: the message says so instead.
    public static func quoted(_ text: String) -> String {
        if looksLikeToken(text) { return "(a workflow token, not shown)" }
        let limit = 80
        let shown =
            text.unicodeScalars.count > limit
            ? String(String.UnicodeScalarView(text.unicodeScalars.prefix(limit))) + "…"
            : text
        return "\"" + shown.unicodeScalars.map { $0.escaped(asASCII: true) }.joined() + "\""
    }

    /// Whether `text` holds what looks like a workflow token: `cft_`, then 16 lowercase hex digits.
    public static func looksLikeToken(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        let prefix = Array("cft_".utf8)
        guard bytes.count >= prefix.count + TokenID.length else { return false }
        for start in 0...(bytes.count - prefix.count - TokenID.length)
        where bytes[start..<(start + 4)].elementsEqual(prefix) {
            let id = bytes[(start + 4)..<(start + 4 + TokenID.length)]
            if id.allSatisfy({ (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }) { return true }
        }
        return false
    }

    private static func describe(_ set: String) -> String {
        var parts: [String] = []
        if set.contains("a") {
            parts.append(set.contains("A") ? "letters" : "lowercase letters")
        } else if set.contains("A") {
            parts.append("letters")
        }
        if set.contains("0") { parts.append("digits") }
        let punctuation = set.filter { !$0.isLetter && !$0.isNumber }
        if !punctuation.isEmpty && punctuation.count < 10 {
            parts.append(punctuation.map { "'\($0)'" }.joined(separator: " "))
        } else if !punctuation.isEmpty {
            return "printable ASCII without spaces"
        }
        return parts.joined(separator: ", ")
    }
}

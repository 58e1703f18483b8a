import CofferCore
import CofferCrypto

/// A recognisable secret value for proving that something never leaks: each canary is unique, so a match
/// in a file, a log or an error can only have come from where it was put.
public struct Canary: Sendable, CustomStringConvertible {
    public let text: String

    public init(_ label: String = "value") {
        text = "CANARY-\(label)-\(Hex.encode(SecureRandom.bytes(12)))"
    }

    public var bytes: [UInt8] { Array(text.utf8) }
    public var secret: SecretBytes { SecretBytes(copying: bytes) }

    /// Whether the canary occurs in `bytes`, as is or in the forms a leak could take (hex, base64).
    public func occurs(in bytes: some Collection<UInt8>) -> Bool {
        let forms = [self.bytes, Array(Hex.encode(self.bytes).utf8), Array(base64(self.bytes).utf8)]
        return forms.contains { bytes.contains(bytes: $0) }
    }

    public func occurs(in text: String) -> Bool { occurs(in: Array(text.utf8)) }

    /// Printing a canary prints only its label: a test's own output must not carry it either.
    public var description: String { "Canary(<redacted>)" }
}

private func base64(_ bytes: [UInt8]) -> String {
    let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
    var out = ""
    var index = 0
    while index + 2 < bytes.count {
        let n = Int(bytes[index]) << 16 | Int(bytes[index + 1]) << 8 | Int(bytes[index + 2])
        out += String([alphabet[n >> 18 & 63], alphabet[n >> 12 & 63], alphabet[n >> 6 & 63], alphabet[n & 63]])
        index += 3
    }
    // The trailing partial group is left off: a leak's base64 still contains the full groups before it.
    return out
}

/// Identifies a key generation: the first 8 bytes of the BLAKE2b hash of its sealing public key, shown as 16
/// hex digits. Public; every sealed value and every value at rest carries the id of the key it belongs to.
public struct KeyID: Hashable, Sendable, CustomStringConvertible {
    /// The id's length in bytes.
    public static let length = 8
    public let bytes: [UInt8]

    public init?(bytes: some Collection<UInt8>) {
        guard bytes.count == Self.length else { return nil }
        self.bytes = Array(bytes)
    }

    public init?(hex: String) {
        guard let bytes = Hex.decode(hex) else { return nil }
        self.init(bytes: bytes)
    }

    public var hex: String { Hex.encode(bytes) }
    public var description: String { hex }
}

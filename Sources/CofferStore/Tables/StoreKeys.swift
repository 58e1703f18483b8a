import CofferCore

/// How each table's keys are laid out. Names are validated before they become keys, so a key never holds
/// anything but the characters `ConnectionRef`, `WorkflowName` and `TokenID` allow.
enum StoreKeys {
    /// `type/name`.
    static func connection(_ ref: ConnectionRef) -> [UInt8] { Array(ref.description.utf8) }

    /// `type/name` NUL `workflow`: a connection's grants are next to each other.
    static func grant(_ ref: ConnectionRef, _ workflow: WorkflowName) -> [UInt8] {
        grantPrefix(ref) + Array(workflow.rawValue.utf8)
    }

    static func grantPrefix(_ ref: ConnectionRef) -> [UInt8] { connection(ref) + [0] }

    static func parseGrant(_ key: [UInt8]) throws(CofferError) -> (ConnectionRef, WorkflowName) {
        guard let nul = key.firstIndex(of: 0) else {
            throw CofferError(.dataLoss, "a grant record has a malformed key")
        }
        do {
            let ref = try ConnectionRef(parsing: String(decoding: key[..<nul], as: UTF8.self))
            let workflow = try WorkflowName(String(decoding: key[(nul + 1)...], as: UTF8.self))
            return (ref, workflow)
        } catch {
            throw CofferError(.dataLoss, "a grant record has a malformed key", cause: error)
        }
    }

    static func parseConnection(_ key: [UInt8]) throws(CofferError) -> ConnectionRef {
        do {
            return try ConnectionRef(parsing: String(decoding: key, as: UTF8.self))
        } catch {
            throw CofferError(.dataLoss, "a connection record has a malformed key", cause: error)
        }
    }

    /// The token's public id.
    static func token(_ id: TokenID) -> [UInt8] { Array(id.rawValue.utf8) }

    static func parseToken(_ key: [UInt8]) throws(CofferError) -> TokenID {
        do {
            return try TokenID(String(decoding: key, as: UTF8.self))
        } catch {
            throw CofferError(.dataLoss, "a token record has a malformed key", cause: error)
        }
    }

    /// A sequence number, 8 bytes big-endian, so that key order is sequence order.
    static func sequence(_ sequence: UInt64) -> [UInt8] {
        (0..<8).reversed().map { UInt8(truncatingIfNeeded: sequence >> ($0 * 8)) }
    }

    static func sequence(of key: [UInt8]) -> UInt64 {
        key.prefix(8).reduce(0) { $0 << 8 | UInt64($1) }
    }

    /// The single metadata record's key.
    static let metadata = Array("meta".utf8)
}

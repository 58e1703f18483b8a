import CofferCore
import Foundation

/// Counts and sizes for `cofferd status`; nothing secret.
public struct StoreStatus: Sendable {
    public var formatVersion: UInt32
    public var keyID: KeyID
    public var created: Date
    public var connections: Int
    public var grants: Int
    public var tokens: Int
    public var auditRecords: Int
    public var mapSize: Int
    public var usedBytes: Int
}

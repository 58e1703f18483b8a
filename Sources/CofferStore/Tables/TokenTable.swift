import CofferCore
import CofferCrypto
import Foundation

/// Workflow tokens under their public id. A token itself is never stored: only its keyed hash.
struct TokenTable {
    let db: Database

    func record(_ id: TokenID, _ txn: Transaction) throws -> Coffer_Storage_V1_TokenRecord? {
        guard let bytes = try txn.record(db, StoreKeys.token(id)) else { return nil }
        return try Coffer_Storage_V1_TokenRecord(serializedBytes: bytes)
    }

    /// Stores a new token's record; never over another token's.
    func insert(_ id: TokenID, _ record: Coffer_Storage_V1_TokenRecord, _ txn: Transaction) throws {
        guard try txn.record(db, StoreKeys.token(id)) == nil else {
            // 64 random bits colliding: vanishingly rare, but never overwrite another token's record.
            throw CofferError(.internal, "token id collision; issue the token again")
        }
        try txn.putRecord(db, StoreKeys.token(id), try record.serializedBytes())
    }

    /// What a presented token stands for, if it is genuine, unexpired and unrevoked; UNAUTHENTICATED if not.
    /// The comparison with the stored hash takes constant time.
    func verify(_ token: SecretBytes, keys: KeyRing, now: Date, _ txn: Transaction) throws -> TokenInfo {
        let invalid = CofferError(.unauthenticated, "the token is not valid")
        guard let id = TokenMaterial.id(of: token) else { throw invalid }
        let record = try record(id, txn)
        // Hash even when the id is unknown, so the two failures take the same time. The digest is what the
        // store keeps on disk, not a secret; the comparison is constant-time all the same.
        let generation = keys.generations[max(record?.generation ?? 1, 1)] ?? keys.active
        let digest = generation.tokenDigest(token)
        guard let record, ConstantTime.equals(digest, Array(record.digest)) else { throw invalid }
        if record.revokedUnixMs != 0 {
            throw CofferError(.unauthenticated, "the token was revoked")
        }
        if now.unixMillis >= record.expiresUnixMs {
            throw CofferError(.unauthenticated, "the token has expired")
        }
        return try Self.info(id, record)
    }

    /// Marks a token revoked (again is harmless); NOT_FOUND when there is no such token.
    /// Revokes the token; `revoked` is false when it was revoked already (and stays as it was).
    func revoke(_ id: TokenID, now: Date, _ txn: Transaction) throws -> (info: TokenInfo, revoked: Bool) {
        guard var record = try record(id, txn) else {
            throw CofferError(.notFound, "no token with id \(id)")
        }
        let revoking = record.revokedUnixMs == 0
        if revoking {
            record.revokedUnixMs = now.unixMillis
            try txn.putRecord(db, StoreKeys.token(id), try record.serializedBytes())
        }
        return (try Self.info(id, record), revoking)
    }

    /// Removes the records of tokens that expired before `cutoff`; returns how many.
    func purge(expiredBefore cutoff: Date, _ txn: Transaction) throws -> Int {
        var expired: [[UInt8]] = []
        try txn.scanRecords(db) { key, value in
            if try Coffer_Storage_V1_TokenRecord(serializedBytes: value).expiresUnixMs < cutoff.unixMillis {
                expired.append(key)
            }
            return true
        }
        for key in expired { try txn.deleteRecord(db, key) }
        return expired.count
    }

    /// Every token's record, sorted by id.
    func all(_ txn: Transaction) throws -> [TokenInfo] {
        var result: [TokenInfo] = []
        try txn.scanRecords(db) { key, value in
            result.append(
                try Self.info(try StoreKeys.parseToken(key), try Coffer_Storage_V1_TokenRecord(serializedBytes: value))
            )
            return true
        }
        return result
    }

    static func info(_ id: TokenID, _ record: Coffer_Storage_V1_TokenRecord) throws(CofferError) -> TokenInfo {
        do {
            return TokenInfo(
                id: id,
                workflow: try WorkflowName(record.workflow),
                runID: record.runID.isEmpty ? nil : try RunID(record.runID),
                created: Date(unixMillis: record.createdUnixMs),
                expires: Date(unixMillis: record.expiresUnixMs),
                revoked: record.revokedUnixMs == 0 ? nil : Date(unixMillis: record.revokedUnixMs)
            )
        } catch {
            throw CofferError(.dataLoss, "the record of token \(id) is malformed", cause: error)
        }
    }
}

import CofferCore
import CofferCrypto
import CofferTestSupport
import Foundation
import Testing

@testable import CofferStore

/// Someone who can write the store's file but has no key: edits of data.mdb, made offline (then the store is
/// opened: it must refuse, naming what failed) or while it is open (then a Get must be DATA_LOSS). Each kind is
/// tried 20 times on different records; none may yield an OK Get.
@Suite struct TamperTests {
    static let cases = 20

    /// A store with connections at several versions, grants, a revoked token and audit records; returns it with
    /// the workflow's token.
    func populated(_ index: Int) throws -> (StoreFixture, IssuedToken) {
        let f = try StoreFixture()
        for n in 0..<4 {
            try f.put("aws/c\(n)", ["key": "VALUE-MARK-k\(n)", "secret": "VALUE-MARK-s\(n)-\(index)"])
            try f.grant("w", "aws/c\(n)")
        }
        try f.store.overwrite(
            try ConnectionRef(parsing: "aws/c\(index % 4)"),
            fields: try f.keys.sealFields(["key": "VALUE-MARK-new"])
        )
        let token = try f.store.issueToken(for: try WorkflowName("w"), ttl: .seconds(3600))
        try f.store.appendAudit(
            (0..<6).map {
                AuditEvent(time: f.clock.now, socket: .worker, action: .operation(.get), peerUID: 1, peerPID: Int32($0))
            }
        )
        _ = try f.store.auditRecords()
        return (f, token)
    }

    /// Raw access to a closed store's file, as an editor of data.mdb has.
    func editing(_ f: StoreFixture, _ body: (Transaction, (String) throws -> Database) throws -> Void) throws {
        f.store.close()
        let env = try Environment(directory: f.dataDirectory.path, mapSize: 1 << 30, maxDatabases: 8)
        defer { env.close() }
        var databases: [String: Database] = [:]
        for name in ["connections", "grants", "tokens", "audit", "meta"] {
            databases[name] = try env.database(name)
        }
        try env.write { txn in
            try body(txn) { name in
                guard let db = databases[name] else { throw CofferError(.internal, "no table \(name) in the test") }
                return db
            }
        }
    }

    /// Opening must refuse with DATA_LOSS whose message names `naming`; so must the real `cofferd verify` and
    /// `cofferd serve` (exit status 10), and neither may print a stored value.
    func expectRefused(_ f: StoreFixture, naming: String, _ comment: Comment? = nil) {
        let error = cofferError { f.store = try f.dataDirectory.open(configuration: f.configuration()) }
        #expect(error?.code == .dataLoss, comment)
        #expect(
            error?.message.contains(naming) == true,
            "\(error?.message ?? "no error"): \(comment?.description ?? "")"
        )
        let data = f.dataDirectory.path
        let sockets = f.dir.child("s")
        let runs = [
            ("verify", ["cofferd", "verify", "--data-dir", data]),
            (
                "serve",
                [
                    "cofferd", "serve", "--data-dir", data,
                    "--admin-socket", sockets + "-admin.sock", "--worker-socket", sockets + "-worker.sock",
                ]
            ),
        ]
        for (name, arguments) in runs {
            // A serve that wrongly starts is stopped by timeout, whose status (124) then fails the test.
            let run = try? BuiltProducts.run(
                "/usr/bin/timeout",
                ["20", BuiltProducts.path(arguments[0])] + arguments.dropFirst()
            )
            #expect(run?.status == 10, "cofferd \(name): \(run?.stderr ?? "did not run") \(comment?.description ?? "")")
            #expect(run?.stderr.contains(naming) == true, "cofferd \(name): \(run?.stderr ?? "")")
            #expect(run?.stdout.contains(Self.valueMark) == false && run?.stderr.contains(Self.valueMark) == false)
        }
    }

    /// Every stored value in these tests holds this mark, so that no printed output can hold one unseen.
    static let valueMark = "VALUE-MARK"

    func payload(_ stored: [UInt8]) -> [UInt8] { Array(stored.dropLast(RecordAuthority.trailerLength)) }
    func trailer(_ stored: [UInt8]) -> [UInt8] { Array(stored.suffix(RecordAuthority.trailerLength)) }

    // MARK: Offline edits, refused at start

    @Test func aRecordRolledBackToAnOlderCopy() throws {
        for index in 0..<Self.cases {
            let f = try StoreFixture()
            let ref = "aws/c\(index)"
            try f.put(ref, ["key": "VALUE-MARK-v1"])
            let old = try f.store.env.read { try $0.get(f.store.tables.connections.db, Array(ref.utf8))! }
            try f.store.overwrite(
                try ConnectionRef(parsing: ref),
                fields: try f.keys.sealFields(["key": "VALUE-MARK-v2"])
            )
            try editing(f) { txn, db in try txn.put(try db("connections"), Array(ref.utf8), old) }
            expectRefused(f, naming: "table connections", "case \(index)")
        }
    }

    @Test func aFieldDroppedOrAdded() throws {
        for index in 0..<Self.cases {
            let (f, _) = try populated(index)
            let ref = "aws/c\(index % 4)"
            try editing(f) { txn, db in
                let connections = try db("connections")
                let stored = try txn.get(connections, Array(ref.utf8))!
                var record = try Coffer_Storage_V1_ConnectionRecord(serializedBytes: payload(stored))
                if index % 2 == 0 { record.fields.removeLast() } else { record.fields.append(record.fields[0]) }
                try txn.put(connections, Array(ref.utf8), try record.serializedBytes() + trailer(stored))
            }
            expectRefused(f, naming: "record \(ref) of connections", "case \(index)")
        }
    }

    @Test func aConnectionReplayedFromBeforeADelete() throws {
        for index in 0..<Self.cases {
            let f = try StoreFixture()
            let ref = "aws/r\(index)"
            try f.put(ref, ["key": "VALUE-MARK-before"])
            let old = try f.store.env.read { try $0.get(f.store.tables.connections.db, Array(ref.utf8))! }
            try f.store.delete(try ConnectionRef(parsing: ref))
            if index % 2 == 0 { try f.put(ref, ["key": "VALUE-MARK-after"]) }
            try editing(f) { txn, db in try txn.put(try db("connections"), Array(ref.utf8), old) }
            expectRefused(f, naming: "table connections", "case \(index)")
        }
    }

    @Test func aGrantInjectedOrBroughtBack() throws {
        for index in 0..<Self.cases {
            let (f, _) = try populated(index)
            try f.put("aws/secret", ["key": "VALUE-MARK-not-for-w"])
            let granted = Array("aws/c\(index % 4)\u{0}w".utf8)
            if index % 2 == 0 {
                // A grant's record copied under another connection's key.
                try editing(f) { txn, db in
                    let grants = try db("grants")
                    try txn.put(grants, Array("aws/secret\u{0}w".utf8), try txn.get(grants, granted)!)
                }
                expectRefused(f, naming: "record aws/secret w of grants", "case \(index)")
            } else {
                // A grant that was revoked, brought back.
                let old = try f.store.env.read { try $0.get(f.store.tables.grants.db, granted)! }
                try f.store.revoke(try WorkflowName("w"), try ConnectionRef(parsing: "aws/c\(index % 4)"))
                try editing(f) { txn, db in try txn.put(try db("grants"), granted, old) }
                expectRefused(f, naming: "table grants", "case \(index)")
            }
        }
    }

    @Test func aTokenRepointedUnrevokedOrReexpired() throws {
        for index in 0..<Self.cases {
            let (f, issued) = try populated(index)
            let key = Array(issued.info.id.rawValue.utf8)
            switch index % 3 {
            case 0:
                try editing(f) { txn, db in
                    let tokens = try db("tokens")
                    let stored = try txn.get(tokens, key)!
                    var record = try Coffer_Storage_V1_TokenRecord(serializedBytes: payload(stored))
                    record.workflow = "admin-like"
                    try txn.put(tokens, key, try record.serializedBytes() + trailer(stored))
                }
                expectRefused(f, naming: "record \(issued.info.id) of tokens", "case \(index)")
            case 1:
                let live = try f.store.env.read { try $0.get(f.store.tables.tokens.db, key)! }
                try f.store.revokeToken(id: issued.info.id)
                try editing(f) { txn, db in try txn.put(try db("tokens"), key, live) }
                expectRefused(f, naming: "table tokens", "case \(index)")
            default:
                try editing(f) { txn, db in
                    let tokens = try db("tokens")
                    let stored = try txn.get(tokens, key)!
                    var record = try Coffer_Storage_V1_TokenRecord(serializedBytes: payload(stored))
                    record.expiresUnixMs += 86_400_000 * 365
                    try txn.put(tokens, key, try record.serializedBytes() + trailer(stored))
                }
                expectRefused(f, naming: "record \(issued.info.id) of tokens", "case \(index)")
            }
        }
    }

    @Test func aKeyIDFlippedInAStoredValue() throws {
        for index in 0..<Self.cases {
            let (f, _) = try populated(index)
            let ref = "aws/c\(index % 4)"
            try editing(f) { txn, db in
                let connections = try db("connections")
                let stored = try txn.get(connections, Array(ref.utf8))!
                var record = try Coffer_Storage_V1_ConnectionRecord(serializedBytes: payload(stored))
                var ciphertext = Array(record.fields[0].ciphertext)
                ciphertext[1 + index % KeyID.length] ^= UInt8(1 << (index % 8))
                record.fields[0].ciphertext = Data(ciphertext)
                try txn.put(connections, Array(ref.utf8), try record.serializedBytes() + trailer(stored))
            }
            expectRefused(f, naming: "record \(ref) of connections", "case \(index)")
        }
    }

    @Test func theAuditTrailEditedCutOrTruncated() throws {
        for index in 0..<Self.cases {
            let (f, _) = try populated(index)
            let last = f.store.currentMetadata.audit.headSequence
            let sequence = 2 + UInt64(index) % (last - 2)
            let target = StoreKeys.sequence(sequence)
            switch index % 3 {
            case 0:
                try editing(f) { txn, db in
                    let audit = try db("audit")
                    var stored = try txn.get(audit, target)!
                    stored[stored.count / 3] ^= 0x04
                    try txn.put(audit, target, stored)
                }
                expectRefused(f, naming: "audit record", "case \(index)")
            case 1:
                // A record removed is a gap in the numbers, named.
                try editing(f) { txn, db in _ = try txn.delete(try db("audit"), target) }
                expectRefused(f, naming: "audit record \(sequence) is missing", "case \(index)")
            default:
                try editing(f) { txn, db in _ = try txn.delete(try db("audit"), StoreKeys.sequence(last)) }
                expectRefused(f, naming: "audit record \(last) is missing", "case \(index)")
            }
        }
    }

    // MARK: Edits while the store is open: the Get is refused

    @Test func whileOpenNoTamperedRecordIsServed() throws {
        var ok = 0
        for index in 0..<Self.cases {
            let (f, issued) = try populated(index)
            let ref = try ConnectionRef(parsing: "aws/c\(index % 4)")
            let key = Array(ref.description.utf8)
            let old = try f.store.env.read { try $0.get(f.store.tables.connections.db, key)! }
            try f.store.overwrite(ref, fields: try f.keys.sealFields(["key": "VALUE-MARK-newest"]))
            switch index % 3 {
            case 0:  // rolled back
                try f.store.env.write { try $0.put(f.store.tables.connections.db, key, old) }
            case 1:  // removed and a revoked token brought back: the token's old copy is live again
                let live = try f.store.env.read {
                    try $0.get(f.store.tables.tokens.db, Array(issued.info.id.rawValue.utf8))!
                }
                try f.store.revokeToken(id: issued.info.id)
                try f.store.env.write {
                    try $0.put(f.store.tables.tokens.db, Array(issued.info.id.rawValue.utf8), live)
                }
            default:  // the grant removed behind cofferd's back, another's injected
                try f.store.env.write { txn in
                    let grant = try txn.get(f.store.tables.grants.db, Array("aws/c0\u{0}w".utf8))!
                    _ = try txn.delete(f.store.tables.grants.db, Array("aws/c0\u{0}w".utf8))
                    try txn.put(f.store.tables.grants.db, Array("aws/c0\u{0}x".utf8), grant)
                }
            }
            let error = cofferError {
                try f.store.read { reader in
                    let info = try reader.verifyToken(issued.token)
                    _ = try reader.values(
                        of: index % 3 == 2 ? try ConnectionRef(parsing: "aws/c0") : ref,
                        for: info.workflow
                    )
                }
            }
            if error == nil { ok += 1 }
            #expect(error?.code == .dataLoss, "case \(index): \(error?.message ?? "served")")
        }
        #expect(ok == 0)
    }

    @Test func anUntamperedStoreVerifies() throws {
        let (f, _) = try populated(0)
        f.store.close()
        f.store = try f.dataDirectory.open(configuration: f.configuration(), access: .unverified)
        #expect(try f.store.verificationProblems().isEmpty)
        f.store.close()
        f.store = try f.dataDirectory.open(configuration: f.configuration())
    }
}

import CofferCore
import CofferCrypto
import CofferTestSupport
import Foundation
import Testing

@testable import CofferStore

@Suite struct ConnectionLifecycleTests {
    @Test func putGetOverwriteDeleteRoundTrip() throws {
        let f = try StoreFixture()
        let info = try f.put("aws/prod", ["access_key_id": "AKIA1", "secret_access_key": "s1"])
        #expect(info.version == 1)
        #expect(info.fields.map(\.rawValue) == ["access_key_id", "secret_access_key"])
        try f.grant("deploy", "aws/prod")
        #expect(try f.values("aws/prod", as: "deploy") == ["access_key_id": "AKIA1", "secret_access_key": "s1"])

        f.advance(60)
        let ref = try ConnectionRef(parsing: "aws/prod")
        let updated = try f.store.overwrite(ref, fields: try f.keys.sealFields(["access_key_id": "AKIA2"]))
        #expect(updated.version == 2)
        #expect(updated.created == info.created)
        #expect(updated.updated == info.updated.addingTimeInterval(60))
        #expect(updated.grants.map(\.rawValue) == ["deploy"])
        // Overwrite replaces the whole set of fields.
        #expect(try f.values("aws/prod", as: "deploy") == ["access_key_id": "AKIA2"])

        try f.store.delete(ref)
        let error = cofferError { _ = try f.values("aws/prod", as: "deploy") }
        #expect(error?.code == .notFound)
        #expect(try f.store.list().isEmpty)
    }

    @Test func putRefusesAnExistingConnection() throws {
        let f = try StoreFixture()
        try f.put("http/api", ["token": "one"])
        let error = cofferError { try f.put("http/api", ["token": "two"]) }
        #expect(error?.code == .alreadyExists)
        try f.grant("w", "http/api")
        #expect(try f.values("http/api", as: "w") == ["token": "one"])
    }

    @Test func overwriteAndDeleteNeedAConnection() throws {
        let f = try StoreFixture()
        let ref = try ConnectionRef(parsing: "http/missing")
        #expect(
            cofferError { try f.store.overwrite(ref, fields: try f.keys.sealFields(["a": "b"])) }?.code == .notFound
        )
        #expect(cofferError { try f.store.delete(ref) }?.code == .notFound)
    }

    @Test func expectedVersionsGuardWrites() throws {
        let f = try StoreFixture()
        let ref = try ConnectionRef(parsing: "basic/db")
        try f.put("basic/db", ["username": "u", "password": "p1"])
        try f.store.overwrite(ref, fields: try f.keys.sealFields(["password": "p2"]), expectedVersion: 1)
        let stale = cofferError {
            try f.store.overwrite(ref, fields: try f.keys.sealFields(["password": "p3"]), expectedVersion: 1)
        }
        #expect(stale?.code == .failedPrecondition)
        #expect(stale?.message.contains("version 2") == true)
        #expect(cofferError { try f.store.delete(ref, expectedVersion: 5) }?.code == .failedPrecondition)
        #expect(try f.store.info(ref).version == 2)
        try f.store.delete(ref, expectedVersion: 2)
        #expect(cofferError { _ = try f.store.info(ref) }?.code == .notFound)
    }

    @Test func versionsGrowWithEveryOverwrite() throws {
        let f = try StoreFixture()
        let ref = try ConnectionRef(parsing: "http/api")
        try f.put("http/api", ["token": "t0"])
        for round in 1...5 {
            let info = try f.store.overwrite(ref, fields: try f.keys.sealFields(["token": "t\(round)"]))
            #expect(info.version == UInt64(round + 1))
        }
        try f.grant("w", "http/api")
        #expect(try f.values("http/api", as: "w") == ["token": "t5"])
    }

    @Test func dataSurvivesReopening() throws {
        let f = try StoreFixture()
        try f.put("aws/prod", ["secret": "kept"])
        try f.grant("deploy", "aws/prod")
        let token = try f.store.issueToken(for: try WorkflowName("deploy"), ttl: .seconds(600))
        try f.reopen()
        #expect(try f.values("aws/prod", as: "deploy") == ["secret": "kept"])
        #expect(try f.store.verifyToken(token.token).workflow.rawValue == "deploy")
        #expect(try f.store.list().map(\.ref.description) == ["aws/prod"])
    }
}

@Suite struct ListingTests {
    @Test func listCarriesNoValueByte() throws {
        let f = try StoreFixture()
        let canaries = (0..<3).map { Canary("list\($0)") }
        try f.put("aws/a", ["key": canaries[0].text, "other": canaries[1].text])
        try f.put("http/b", ["token": canaries[2].text])
        try f.grant("w1", "aws/a")
        try f.grant("w2", "aws/a")
        let listing = try f.store.list()
        #expect(listing.map(\.ref.description) == ["aws/a", "http/b"])
        #expect(listing[0].fields.map(\.rawValue) == ["key", "other"])
        #expect(listing[0].grants.map(\.rawValue) == ["w1", "w2"])
        var dumped = ""
        dump(listing, to: &dumped)
        for canary in canaries {
            #expect(!canary.occurs(in: dumped))
            #expect(!canary.occurs(in: String(describing: listing)))
        }
    }

    @Test func statusCountsWithoutSecrets() throws {
        let f = try StoreFixture()
        try f.put("aws/a", ["k": "v"])
        try f.grant("w", "aws/a")
        _ = try f.store.issueToken(for: try WorkflowName("w"), ttl: .seconds(60))
        let status = try f.store.status()
        #expect(status.connections == 1)
        #expect(status.grants == 1)
        #expect(status.tokens == 1)
        #expect(status.keyID == f.keys.keyID)
        #expect(status.usedBytes > 0 && status.usedBytes < status.mapSize)
    }
}

@Suite struct IntegrityTests {
    /// Puts two connections and returns their raw records.
    func twoConnections(
        _ f: StoreFixture
    ) throws -> (Coffer_Storage_V1_ConnectionRecord, Coffer_Storage_V1_ConnectionRecord) {
        try f.put("aws/a", ["one": Canary("a1").text, "two": Canary("a2").text])
        try f.put("aws/b", ["one": Canary("b1").text])
        try f.grant("w", "aws/a")
        try f.grant("w", "aws/b")
        return (try f.rawRecord("aws/a"), try f.rawRecord("aws/b"))
    }

    func expectIntegrityError(_ f: StoreFixture, _ ref: String) {
        let error = cofferError { _ = try f.values(ref, as: "w") }
        #expect(error?.code == .dataLoss)
    }

    @Test func ciphertextCopiedToAnotherConnectionIsRefused() throws {
        let f = try StoreFixture()
        let (a, b) = try twoConnections(f)
        var altered = b
        altered.fields[0].ciphertext = a.fields[0].ciphertext  // a's "one" into b's "one"
        try f.replaceRawRecord("aws/b", altered)
        expectIntegrityError(f, "aws/b")
    }

    @Test func ciphertextCopiedToAnotherFieldIsRefused() throws {
        let f = try StoreFixture()
        var (a, _) = try twoConnections(f)
        a.fields[1].ciphertext = a.fields[0].ciphertext  // "one" into "two"
        try f.replaceRawRecord("aws/a", a)
        expectIntegrityError(f, "aws/a")
    }

    @Test func olderVersionIsRefused() throws {
        let f = try StoreFixture()
        let (old, _) = try twoConnections(f)
        try f.store.overwrite(
            try ConnectionRef(parsing: "aws/a"),
            fields: try f.keys.sealFields(["one": "new", "two": "new"])
        )
        var current = try f.rawRecord("aws/a")
        current.fields[0].ciphertext = old.fields[0].ciphertext  // version 1's value under version 2
        try f.replaceRawRecord("aws/a", current)
        expectIntegrityError(f, "aws/a")
        // Rolling back the version number too does not help: the rest of the record is version 2.
        var rolledBack = try f.rawRecord("aws/a")
        rolledBack.version = 1
        try f.replaceRawRecord("aws/a", rolledBack)
        expectIntegrityError(f, "aws/a")
    }

    @Test func flippedBitIsRefused() throws {
        let f = try StoreFixture()
        var (a, _) = try twoConnections(f)
        var bytes = Array(a.fields[0].ciphertext)
        bytes[bytes.count / 2] ^= 0x01
        a.fields[0].ciphertext = Data(bytes)
        try f.replaceRawRecord("aws/a", a)
        expectIntegrityError(f, "aws/a")
    }

    @Test func renamedFieldIsRefused() throws {
        let f = try StoreFixture()
        var (a, _) = try twoConnections(f)
        a.fields[0].name = "three"
        try f.replaceRawRecord("aws/a", a)
        expectIntegrityError(f, "aws/a")
    }

    @Test func wrongMasterKeyIsRefusedAtOpen() throws {
        let f = try StoreFixture()
        try f.put("aws/a", ["k": "v"])
        f.store.close()
        let otherKey = f.dir.child("other.key")
        try MasterKey.generate().write(newFileAt: otherKey)
        let error = cofferError { _ = try f.dataDirectory.open(keyFile: otherKey, configuration: f.configuration()) }
        #expect(error?.code == .failedPrecondition)
        #expect(error?.message.contains("master key does not match") == true)
        // The right key still opens it.
        try f.reopen()
        #expect(try f.store.list().count == 1)
    }

    @Test func canaryNeverReachesTheFileInPlaintext() throws {
        let f = try StoreFixture()
        let canary = Canary("disk")
        try f.put("aws/disk", ["secret": canary.text])
        try f.store.overwrite(
            try ConnectionRef(parsing: "aws/disk"),
            fields: try f.keys.sealFields(["secret": canary.text + "-2"])
        )
        f.store.close()
        let bytes = f.diskBytes()
        #expect(bytes.count > 0)
        #expect(!canary.occurs(in: bytes))
        // The file does hold the names, so the scan is looking at the right data.
        #expect(bytes.contains(bytes: Array("aws/disk".utf8)))
    }
}

@Suite struct GrantTests {
    @Test func ungrantedWorkflowIsDeniedWhetherOrNotTheConnectionExists() throws {
        let f = try StoreFixture()
        try f.put("aws/real", ["k": "v"])
        let existing = cofferError { _ = try f.values("aws/real", as: "intruder") }
        let missing = cofferError { _ = try f.values("aws/imaginary", as: "intruder") }
        #expect(existing?.code == .permissionDenied)
        #expect(missing?.code == .permissionDenied)
        // Same shape of message: the answer does not tell them apart.
        #expect(
            existing?.message.replacingOccurrences(of: "aws/real", with: "X")
                == missing?.message.replacingOccurrences(of: "aws/imaginary", with: "X")
        )
    }

    @Test func grantNeedsTheConnectionAndIsIdempotent() throws {
        let f = try StoreFixture()
        #expect(cofferError { try f.grant("w", "aws/none") }?.code == .notFound)
        try f.put("aws/a", ["k": "v"])
        #expect(try f.store.grant(try WorkflowName("w"), try ConnectionRef(parsing: "aws/a")))
        #expect(try !f.store.grant(try WorkflowName("w"), try ConnectionRef(parsing: "aws/a")))
        #expect(try f.store.isGranted(try WorkflowName("w"), try ConnectionRef(parsing: "aws/a")))
    }

    @Test func revokeTakesAccessAway() throws {
        let f = try StoreFixture()
        try f.put("aws/a", ["k": "v"])
        try f.grant("w", "aws/a")
        try f.store.revoke(try WorkflowName("w"), try ConnectionRef(parsing: "aws/a"))
        #expect(cofferError { _ = try f.values("aws/a", as: "w") }?.code == .permissionDenied)
        #expect(
            cofferError { try f.store.revoke(try WorkflowName("w"), try ConnectionRef(parsing: "aws/a")) }?.code
                == .notFound
        )
    }

    @Test func deleteRemovesGrantsAndANewConnectionStartsUngranted() throws {
        let f = try StoreFixture()
        try f.put("aws/a", ["k": "v"])
        try f.grant("w", "aws/a")
        try f.store.delete(try ConnectionRef(parsing: "aws/a"))
        // The workflow that held a grant learns it was deleted.
        #expect(cofferError { _ = try f.values("aws/a", as: "w") }?.code == .notFound)
        #expect(try !f.store.isGranted(try WorkflowName("w"), try ConnectionRef(parsing: "aws/a")))
        #expect(try f.store.status().grants == 0)
        // A connection put again under the same name is not reachable through the old grant.
        try f.put("aws/a", ["k": "new"])
        #expect(cofferError { _ = try f.values("aws/a", as: "w") }?.code == .permissionDenied)
        #expect(try f.store.list()[0].grants.isEmpty)
    }

    @Test func deletingOneConnectionLeavesOthersGrants() throws {
        let f = try StoreFixture()
        try f.put("aws/a", ["k": "a"])
        try f.put("aws/ab", ["k": "ab"])
        try f.grant("w", "aws/a")
        try f.grant("w", "aws/ab")
        try f.store.delete(try ConnectionRef(parsing: "aws/a"))
        #expect(try f.values("aws/ab", as: "w") == ["k": "ab"])
    }
}

@Suite struct TokenTests {
    @Test func issuedTokenVerifiesUntilItExpires() throws {
        let f = try StoreFixture()
        let run = try RunID("run-42")
        let issued = try f.store.issueToken(for: try WorkflowName("deploy"), ttl: .seconds(300), runID: run)
        let info = try f.store.verifyToken(issued.token)
        #expect(info.workflow.rawValue == "deploy")
        #expect(info.runID == run)
        #expect(info.id == issued.info.id)
        f.advance(299)
        _ = try f.store.verifyToken(issued.token)
        f.advance(1)
        let error = cofferError { _ = try f.store.verifyToken(issued.token) }
        #expect(error?.code == .unauthenticated)
        #expect(error?.message.contains("expired") == true)
    }

    @Test func revokedTokenIsRefused() throws {
        let f = try StoreFixture()
        let issued = try f.store.issueToken(for: try WorkflowName("deploy"), ttl: .seconds(300))
        let revoked = try f.store.revokeToken(id: issued.info.id)
        #expect(revoked.revoked != nil)
        #expect(cofferError { _ = try f.store.verifyToken(issued.token) }?.code == .unauthenticated)
        // Revoking again is harmless; an unknown id is NOT_FOUND.
        _ = try f.store.revokeToken(id: issued.info.id)
        #expect(cofferError { _ = try f.store.revokeToken(id: try TokenID("0000000000000000")) }?.code == .notFound)
    }

    @Test func forgedTokensAreRefused() throws {
        let f = try StoreFixture()
        let issued = try f.store.issueToken(for: try WorkflowName("deploy"), ttl: .seconds(300))
        var altered = issued.token.copyBytes()
        altered[altered.count - 1] =
            altered[altered.count - 1] == UInt8(ascii: "A") ? UInt8(ascii: "B") : UInt8(ascii: "A")
        let forgeries: [[UInt8]] = [
            altered,
            [],
            Array("cft_".utf8),
            Array("cft_\(issued.info.id)_".utf8),
            Array("cft_0000000000000000_AAAA".utf8),
            issued.token.copyBytes() + [0x41],
        ]
        for forged in forgeries {
            let error = cofferError { _ = try f.store.verifyToken(SecretBytes(copying: forged)) }
            #expect(error?.code == .unauthenticated)
            #expect(error?.message == "the token is not valid")
        }
        // A token from another store with the same id layout does not verify here.
        let other = try StoreFixture()
        let foreign = try other.store.issueToken(for: try WorkflowName("deploy"), ttl: .seconds(300))
        #expect(cofferError { _ = try f.store.verifyToken(foreign.token) }?.code == .unauthenticated)
    }

    @Test func tokenIsStoredOnlyAsAHash() throws {
        let f = try StoreFixture()
        let issued = try f.store.issueToken(for: try WorkflowName("deploy"), ttl: .seconds(300))
        f.store.close()
        let bytes = f.diskBytes()
        let token = issued.token.copyBytes()
        let secretPart = Array(token.suffix(from: "cft_".count + 17))
        #expect(!bytes.contains(bytes: token))
        #expect(!bytes.contains(bytes: secretPart))
        #expect(bytes.contains(bytes: Array(issued.info.id.rawValue.utf8)))
    }

    @Test func timeToLiveIsBounded() throws {
        let f = try StoreFixture()
        let w = try WorkflowName("w")
        #expect(cofferError { _ = try f.store.issueToken(for: w, ttl: .zero) }?.code == .invalidArgument)
        #expect(cofferError { _ = try f.store.issueToken(for: w, ttl: .seconds(-5)) }?.code == .invalidArgument)
        #expect(
            cofferError { _ = try f.store.issueToken(for: w, ttl: .seconds(31 * 24 * 3600)) }?.code == .invalidArgument
        )
        #expect(try f.store.listTokens().isEmpty)
    }

    @Test func expiredTokensArePurged() throws {
        let f = try StoreFixture()
        let w = try WorkflowName("w")
        let short = try f.store.issueToken(for: w, ttl: .seconds(60))
        let long = try f.store.issueToken(for: w, ttl: .seconds(7200))
        try f.store.revokeToken(id: long.info.id)
        #expect(try f.store.purgeTokens(expiredBefore: f.clock.now) == 0)
        f.advance(61)
        #expect(try f.store.purgeTokens(expiredBefore: f.clock.now) == 1)
        #expect(try f.store.listTokens().map(\.id) == [long.info.id])
        // A purged token is refused like any unknown one.
        #expect(cofferError { _ = try f.store.verifyToken(short.token) }?.message == "the token is not valid")
        f.advance(7200)
        #expect(try f.store.purgeTokens(expiredBefore: f.clock.now) == 1)
        #expect(try f.store.listTokens().isEmpty)
    }

    @Test func listingTokensShowsNoToken() throws {
        let f = try StoreFixture()
        let issued = try f.store.issueToken(for: try WorkflowName("w"), ttl: .seconds(60))
        let listing = try f.store.listTokens()
        #expect(listing == [issued.info])
        var dumped = ""
        dump(listing, to: &dumped)
        #expect(!dumped.contains(issued.token.testText))
    }
}

@Suite struct LimitTests {
    @Test func boundsAreCheckedBeforeAnythingIsWritten() throws {
        var limits = StoreLimits()
        limits.maxFields = 3
        limits.maxValueBytes = 100
        limits.maxConnectionBytes = 250
        let f = try StoreFixture(limits: limits)
        let ref = try ConnectionRef(parsing: "http/x")
        #expect(cofferError { try f.store.put(ref, fields: [:]) }?.code == .invalidArgument)
        #expect(
            cofferError { try f.put("http/x", ["a": "1", "b": "2", "c": "3", "d": "4"]) }?.code == .invalidArgument
        )
        #expect(
            cofferError { try f.put("http/x", ["a": String(repeating: "x", count: 101)]) }?.code == .invalidArgument
        )
        #expect(
            cofferError {
                try f.put(
                    "http/x",
                    [
                        "a": String(repeating: "x", count: 100), "b": String(repeating: "x", count: 100),
                        "c": String(repeating: "x", count: 100),
                    ]
                )
            }?.code == .invalidArgument
        )
        #expect(try f.store.list().isEmpty)
        try f.put("http/x", ["a": String(repeating: "x", count: 100), "b": "", "c": "y"])
        #expect(try f.store.info(ref).fields.count == 3)
    }

    @Test func aFullMapIsAClearErrorAndLosesNothing() throws {
        let f = try StoreFixture(mapSize: 256 * 1024)
        try f.put("http/first", ["v": "kept"])
        try f.grant("w", "http/first")
        var full: CofferError?
        for index in 0..<64 where full == nil {
            full = cofferError { try f.put("http/n\(index)", ["v": String(repeating: "x", count: 60_000)]) }
        }
        #expect(full?.code == .resourceExhausted)
        #expect(full?.message.contains("--map-size") == true)
        // Still serving, and what was acknowledged is intact.
        #expect(try f.values("http/first", as: "w") == ["v": "kept"])
        try f.reopen()
        #expect(try f.values("http/first", as: "w") == ["v": "kept"])
    }

    @Test func sealedToAnotherKeyIsRefusedWithoutWriting() throws {
        let f = try StoreFixture()
        let other = randomKeyRing()
        let canary = Canary()
        let sealed = try SealedValue.seal(canary.secret, to: other.publicKey, keyID: f.keys.keyID)
        let error = cofferError {
            try f.store.put(try ConnectionRef(parsing: "aws/x"), fields: [try FieldName("k"): sealed])
        }
        #expect(error?.code == .invalidArgument)
        #expect(error.map { canary.occurs(in: $0.message) } == false)
        #expect(try f.store.list().isEmpty)
    }
}

@Suite struct ConcurrencyTests {
    /// Writers on many threads at once: LMDB serialises them, and none may deadlock or lose a write.
    @Test func concurrentWritersAllLand() throws {
        let f = try StoreFixture()
        let store = f.store!
        let keys = f.keys
        let failures = FailureCounter()
        DispatchQueue.concurrentPerform(iterations: 40) { index in
            do {
                let ref = try ConnectionRef(parsing: "http/c\(index)")
                try store.put(ref, fields: try keys.sealFields(["v": "\(index)"]))
                try store.overwrite(ref, fields: try keys.sealFields(["v": "\(index)!"]), expectedVersion: 1)
                try store.grant(try WorkflowName("w"), ref)
                _ = try store.list()
            } catch {
                failures.add()
            }
        }
        #expect(failures.count == 0)
        #expect(try store.list().count == 40)
        #expect(try f.values("http/c7", as: "w") == ["v": "7!"])
    }

    @Test func closeWaitsAndLaterCallsAreUnavailable() throws {
        let f = try StoreFixture()
        f.store.close()
        #expect(cofferError { _ = try f.store.list() }?.code == .unavailable)
    }

    @Test func aSecondOpenInOneProcessIsRefused() throws {
        let f = try StoreFixture()
        let error = cofferError { _ = try f.dataDirectory.open(configuration: f.configuration()) }
        #expect(error?.code == .failedPrecondition)
        #expect(error?.message.contains("already open") == true)
    }
}

final class FailureCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var value = 0
    func add() { lock.withLock { value += 1 } }
    var count: Int { lock.withLock { value } }
}

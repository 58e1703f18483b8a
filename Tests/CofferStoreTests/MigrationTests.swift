import CofferCore
import CofferCrypto
import CofferTestSupport
import Foundation
import Testing

@testable import CofferStore

/// A store made by an earlier release (Fixtures/format-1, written by that release's cofferd through the CLI):
/// this build migrates it to format 2 when it opens it, and serves exactly what it held.
@Suite struct MigrationTests {
    struct Expected: Decodable {
        struct Connection: Decodable {
            var version: UInt64
            var values: [String: String]
            var grants: [String]
        }

        var token: String
        var token_id: String
        var token_expires_unix_ms: Int64
        var revoked_token_id: String
        var workflow: String
        var connections: [String: Connection]
        var deleted_with_grant: String
        var audit_records: Int
    }

    /// A copy of the fixture in a fresh data directory, and what it holds.
    static func copy() throws -> (TemporaryDirectory, DataDirectory, Expected) {
        try copyFixture("format-1", expecting: Expected.self)
    }

    @Test func anEarlierReleasesStoreServesWhatItHeld() throws {
        let (dir, directory, expected) = try Self.copy()
        let clock = TestClock()
        let now = Date(unixMillis: expected.token_expires_unix_ms - 3_600_000)
        clock.advance(now.timeIntervalSince(clock.now))
        let store = try directory.open(
            configuration: StoreConfiguration(directory: directory.path, clock: { clock.now })
        )
        defer { store.close() }
        let workflow = try WorkflowName(expected.workflow)

        let listed = try store.list()
        #expect(listed.map(\.ref.description) == expected.connections.keys.sorted())
        for info in listed {
            let want = try #require(expected.connections[info.ref.description])
            #expect(info.version == want.version)
            #expect(info.grants.map(\.rawValue) == want.grants)
            let values = try store.get(info.ref, for: workflow)
            #expect(
                Dictionary(uniqueKeysWithValues: values.fields.map { ($0.key.rawValue, $0.value.testText) })
                    == want.values
            )
        }
        #expect(try store.verifyToken(SecretBytes(utf8: expected.token)).id.rawValue == expected.token_id)
        let revoked = try store.listTokens().first { $0.id.rawValue == expected.revoked_token_id }
        #expect(revoked?.revoked != nil)
        let deleted = cofferError {
            _ = try store.get(try ConnectionRef(parsing: expected.deleted_with_grant), for: workflow)
        }
        #expect(deleted?.code == .notFound)
        #expect(try store.auditRecords().count == expected.audit_records)
        // It is now of format 2, and opens (verified in full) as one.
        #expect(try store.status().formatVersion == 2)
        store.close()
        let again = try directory.open(
            configuration: StoreConfiguration(directory: directory.path, clock: { clock.now })
        )
        #expect(try again.get(try ConnectionRef(parsing: "http/api"), for: workflow).version == 2)
        again.close()
        withExtendedLifetime(dir) {}
    }
}

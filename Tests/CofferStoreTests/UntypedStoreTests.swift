import CofferCore
import CofferCrypto
import CofferTestSupport
import Foundation
import Testing

@testable import CofferStore

/// A store of format 2 made before connection types (Fixtures/format-2-untyped, written by that build's cofferd
/// through the CLI, with names such as aws/prod holding free-form fields): this build serves every connection
/// as it was, untyped, and verifies the store unchanged.
@Suite struct UntypedStoreTests {
    struct Expected: Decodable {
        struct Connection: Decodable {
            var version: UInt64
            var values: [String: String]
        }

        var token: String
        var token_expires_unix_ms: Int64
        var workflow: String
        var connections: [String: Connection]
    }

    /// A copy of the fixture in a fresh data directory, and what it holds.
    static func copy() throws -> (TemporaryDirectory, DataDirectory, Expected) {
        try copyFixture("format-2-untyped", expecting: Expected.self)
    }

    @Test func everyConnectionIsServedAsItWasUntyped() throws {
        let (dir, directory, expected) = try Self.copy()
        let clock = TestClock()
        clock.advance(Date(unixMillis: expected.token_expires_unix_ms - 3_600_000).timeIntervalSince(clock.now))
        let store = try directory.open(
            configuration: StoreConfiguration(directory: directory.path, clock: { clock.now })
        )
        defer { store.close() }
        let workflow = try WorkflowName(expected.workflow)
        #expect(try store.verifyToken(SecretBytes(utf8: expected.token)).workflow == workflow)
        let listed = try store.list()
        #expect(listed.map(\.ref.description) == expected.connections.keys.sorted())
        for info in listed {
            let want = try #require(expected.connections[info.ref.description])
            #expect(info.version == want.version && info.shape == .untyped && info.servedType == "generic")
            #expect(info.secretFields.map(\.rawValue) == want.values.keys.sorted())
            let values = try store.get(info.ref, for: workflow)
            #expect(values.shape == .untyped)
            #expect(
                Dictionary(uniqueKeysWithValues: values.fields.map { ($0.key.rawValue, $0.value.testText) })
                    == want.values
            )
        }
        #expect(try store.verificationProblems().isEmpty)
        withExtendedLifetime(dir) {}
    }
}

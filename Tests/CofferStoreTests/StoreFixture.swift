import CofferCore
import CofferCrypto
import CofferTestSupport
import Foundation

@testable import CofferStore

/// A store in a temporary data directory, with a clock the test can move.
final class StoreFixture: @unchecked Sendable {
    let dir = TemporaryDirectory()
    let clock = TestClock()
    var store: ConnectionStore!

    var dataDirectory: DataDirectory { DataDirectory(dir.child("data")) }

    init(mapSize: Int = StoreConfiguration.defaultMapSize, limits: StoreLimits = StoreLimits()) throws {
        store = try dataDirectory.initialize(configuration: configuration(mapSize: mapSize, limits: limits))
    }

    func configuration(
        mapSize: Int = StoreConfiguration.defaultMapSize,
        limits: StoreLimits = StoreLimits()
    )
        -> StoreConfiguration
    {
        StoreConfiguration(
            directory: dataDirectory.path,
            mapSize: mapSize,
            limits: limits,
            clock: { [clock] in clock.now }
        )
    }

    var keys: KeyRing { store.keys }

    func advance(_ seconds: TimeInterval) { clock.advance(seconds) }

    /// Closes and opens the store again, from the files alone.
    func reopen() throws {
        store.close()
        store = try dataDirectory.open(configuration: configuration())
    }

    @discardableResult
    func put(_ ref: String, _ values: [String: String]) throws -> ConnectionInfo {
        try store.put(try ConnectionRef(parsing: ref), fields: try keys.sealFields(values))
    }

    func values(_ ref: String, as workflow: String) throws -> [String: String] {
        let got = try store.get(try ConnectionRef(parsing: ref), for: try WorkflowName(workflow))
        return Dictionary(uniqueKeysWithValues: got.fields.map { ($0.key.rawValue, $0.value.testText) })
    }

    func grant(_ workflow: String, _ ref: String) throws {
        try store.grant(try WorkflowName(workflow), try ConnectionRef(parsing: ref))
    }

    /// The raw stored record of a connection.
    func rawRecord(_ ref: String) throws -> Coffer_Storage_V1_ConnectionRecord {
        try store.env.read { txn in
            let stored = try txn.get(store.tables.connections.db, Array(ref.utf8))!
            return try Coffer_Storage_V1_ConnectionRecord(
                serializedBytes: Array(stored.dropLast(RecordAuthority.trailerLength))
            )
        }
    }

    /// Writes `record` over a connection's, behind the store's back: with the old record's tag, as someone
    /// without the key would.
    func replaceRawRecord(_ ref: String, _ record: Coffer_Storage_V1_ConnectionRecord) throws {
        try store.env.write { txn in
            let old = try txn.get(store.tables.connections.db, Array(ref.utf8))!
            let payload: [UInt8] = try record.serializedBytes()
            try txn.put(
                store.tables.connections.db,
                Array(ref.utf8),
                payload + old.suffix(RecordAuthority.trailerLength)
            )
        }
    }

    /// Every byte the store left on disk.
    func diskBytes() -> [UInt8] {
        allFileBytes(under: dataDirectory.path).flatMap(\.1)
    }
}

/// The error a throwing expression threw, as a `CofferError`.
func cofferError(_ body: () throws -> Void) -> CofferError? {
    do {
        try body()
        return nil
    } catch {
        return error as? CofferError
    }
}

/// A copy of the store fixture `Fixtures/NAME` (written by an earlier build) in a fresh data directory, and what
/// its `expected.json` says it holds.
func copyFixture<Expected: Decodable>(
    _ name: String,
    expecting: Expected.Type
) throws -> (TemporaryDirectory, DataDirectory, Expected) {
    let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/\(name)")
    let dir = TemporaryDirectory()
    let data = try dir.copyStoreFixture(fixture)
    let expected = try JSONDecoder().decode(
        Expected.self,
        from: Data(contentsOf: fixture.appendingPathComponent("expected.json"))
    )
    return (dir, DataDirectory(data), expected)
}

import Benchmark
import CofferClient
import CofferCore
import CofferCrypto
import CofferServer
import CofferStore
import Foundation
import Logging

/// A store in a fresh temporary directory, with one granted connection and a token for it.
final class Fixture: @unchecked Sendable {
    let directory: String
    let store: ConnectionStore
    let ref: ConnectionRef
    let workflow: WorkflowName
    let token: SecretBytes

    init(valueSize: Int = 64) throws {
        directory = NSTemporaryDirectory() + "coffer-bench-" + UUID().uuidString
        store = try DataDirectory(directory + "/data").initialize()
        ref = try ConnectionRef(parsing: "aws/bench")
        workflow = try WorkflowName("bench")
        let keys = store.keys
        func seal(_ size: Int) throws -> SealedValue {
            try SealedValue.seal(
                SecretBytes(copying: [UInt8](repeating: 0x61, count: size)),
                to: keys.publicKey,
                keyID: keys.keyID
            )
        }
        try store.put(
            ref,
            fields: [
                try FieldName("access_key_id"): try seal(20),
                try FieldName("secret_access_key"): try seal(valueSize),
            ]
        )
        try store.grant(workflow, ref)
        token = try store.issueToken(for: workflow, ttl: .seconds(3600)).token
    }

    func sealed(_ size: Int) throws -> [FieldName: SealedValue] {
        [
            try FieldName("value"): try SealedValue.seal(
                SecretBytes(copying: [UInt8](repeating: 0x62, count: size)),
                to: store.keys.publicKey,
                keyID: store.keys.keyID
            )
        ]
    }

    deinit {
        store.close()
        try? FileManager.default.removeItem(atPath: directory)
    }
}

// One fixture per benchmark, made once: the benchmark closure runs once per sample, and setup must not be
// measured. Global lets are created lazily and once.
let getFixture = try! Fixture()
let tokenFixture = try! Fixture()
let putFixture = try! Fixture()
let auditFixture = try! Fixture()
let serverFixture = try! Fixture()
let journalStoreFixture = try! Fixture()
/// Never folded: the benchmark measures the append alone, and its iterations are capped.
let journalFixture = try! AuditJournal.open(store: journalStoreFixture.store, maxPending: Int.max).0
let putCounter = Counter()

final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var value = 0
    func next(_ count: Int) -> Range<Int> {
        lock.withLock {
            defer { value += count }
            return value..<(value + count)
        }
    }
}

/// cofferd's server on the server fixture's store, started once.
final class ServerHandle: @unchecked Sendable {
    let client: CofferWorkerClient

    init() throws {
        let fixture = serverFixture
        let configuration = ServerConfiguration(
            adminSocket: SocketConfiguration(path: fixture.directory + "/a.sock", mode: 0o600),
            workerSocket: SocketConfiguration(path: fixture.directory + "/w.sock", mode: 0o600)
        )
        var logger = Logger(label: "bench")
        logger.logLevel = .warning
        let (journal, _) = try AuditJournal.open(store: fixture.store)
        let commits = CommitQueue(store: fixture.store, journal: journal)
        commits.start()
        let server = CofferServer(
            configuration: configuration,
            store: fixture.store,
            journal: journal,
            commits: commits,
            logger: logger
        )
        Task { try await server.run() }
        var client: CofferWorkerClient?
        for _ in 0..<500 where client == nil {
            client = try? CofferWorkerClient(socketPath: configuration.workerSocket.path)
            if client == nil { usleep(10_000) }
        }
        guard let client else { throw CofferError(.unavailable, "the benchmark's server did not start") }
        self.client = client
    }
}

let server = try! ServerHandle()

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .throughput, .mallocCountTotal, .peakMemoryResident],
        maxDuration: .seconds(3),
        maxIterations: 100_000
    )

    Benchmark("crypto: open a sealed 1 KiB value and seal it at rest") { benchmark in
        let keys = KeyRing(master: MasterKey.generate())
        let sealed = try SealedValue.seal(
            SecretBytes(copying: [UInt8](repeating: 1, count: 1024)),
            to: keys.publicKey,
            keyID: keys.keyID
        )
        let field = try FieldName("value")
        let binding = FieldBinding(
            connection: try ConnectionRef(parsing: "aws/x"),
            field: field,
            recordVersion: 1,
            incarnation: [UInt8](repeating: 7, count: KeyRing.incarnationLength)
        )
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            blackHole(keys.sealAtRest(try keys.open(sealed, field: field), binding: binding))
        }
        benchmark.stopMeasurement()
    }

    Benchmark("store: get for a workflow (grant check, decrypt two fields)") { benchmark in
        let fixture = getFixture
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            blackHole(try fixture.store.get(fixture.ref, for: fixture.workflow))
        }
        benchmark.stopMeasurement()
    }

    Benchmark("store: verify a workflow token") { benchmark in
        let fixture = tokenFixture
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            blackHole(try fixture.store.verifyToken(fixture.token))
        }
        benchmark.stopMeasurement()
    }

    Benchmark(
        "store: put a 1 KiB connection (durable commit)",
        configuration: .init(maxDuration: .seconds(3), maxIterations: 2_000)
    ) { benchmark in
        let fixture = putFixture
        let refs = try putCounter.next(benchmark.scaledIterations.count).map {
            try ConnectionRef(parsing: "http/c\($0)")
        }
        let fields = try fixture.sealed(1024)
        benchmark.startMeasurement()
        for ref in refs {
            blackHole(try fixture.store.put(ref, fields: fields))
        }
        benchmark.stopMeasurement()
    }

    Benchmark(
        "store: append a batch of 512 audit records (one commit)",
        configuration: .init(maxDuration: .seconds(3), maxIterations: 1_000)
    ) { benchmark in
        let fixture = auditFixture
        let batch = (0..<512).map { _ in
            AuditEvent(time: Date(), socket: .worker, action: .operation(.get), peerUID: 0, peerPID: 1)
        }
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            try fixture.store.appendAudit(batch)
        }
        benchmark.stopMeasurement()
    }

    Benchmark(
        "journal: append the records of a turn of 16 Gets (one write)",
        configuration: .init(maxDuration: .seconds(3), maxIterations: 20_000)
    ) { benchmark in
        let journal = journalFixture
        let batch = (0..<16).map { _ in
            AuditEvent(time: Date(), socket: .worker, action: .operation(.get), peerUID: 0, peerPID: 1)
        }
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            blackHole(try journal.append(batch))
        }
        benchmark.stopMeasurement()
    }

    Benchmark(
        "server: Get over the worker socket, end to end",
        configuration: .init(maxDuration: .seconds(3), maxIterations: 20_000)
    ) { benchmark in
        let fixture = serverFixture
        let client = server.client
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            blackHole(try client.get(fixture.ref, token: fixture.token))
        }
        benchmark.stopMeasurement()
    }
}

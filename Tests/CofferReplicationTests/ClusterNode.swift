import CofferCore
import CofferCrypto
import CofferReplication
import CofferStore
import CofferTestSupport
import Foundation
import Logging
import Synchronization

/// A cluster's master key in a file, which every node of a test reads.
final class ClusterKey: Sendable {
    let directory = TemporaryDirectory(prefix: "coffer-cluster-key")
    var path: String { directory.child("master.key") }

    init() throws {
        try MasterKey.generate().write(newFileAt: path)
    }
}

/// One node of a cluster in this process: a store in its own directory, its writer, and the service that follows
/// the log, started and stopped by the test.
final class ClusterNode: @unchecked Sendable {
    let directory = TemporaryDirectory(prefix: "coffer-node")
    let store: ConnectionStore
    let journal: AuditJournal
    let commits: CommitQueue
    let status: ReplicationStatus
    let log: any ReplicationLog
    private var following: Task<Void, Never>?
    private let executor = LogExecutor(name: "coffer-test-node")

    init(
        key: ClusterKey,
        log: any ReplicationLog,
        writeDeadline: Duration = .seconds(2),
        maxLag: Duration = .seconds(1),
        staleAfter: Duration = .seconds(3600)
    ) throws {
        self.log = log
        store = try DataDirectory(directory.child("data")).initialize(keyFile: key.path)
        (journal, _) = try AuditJournal.open(store: store)
        commits = CommitQueue(store: store, journal: journal)
        commits.start()
        status = ReplicationStatus(maxLag: maxLag, staleAfter: staleAfter)
        store.replicate(through: log, status: status, writeDeadline: writeDeadline)
    }

    deinit {
        following?.cancel()
        commits.stop()
        journal.close()
        store.close()
    }

    /// Starts following the log: reads on every notification and every `poll`.
    func follow(poll: Duration = .milliseconds(20), readDeadline: Duration = .milliseconds(300)) {
        let service = ReplicationService(
            store: store,
            commits: commits,
            log: log,
            status: status,
            poll: poll,
            readDeadline: readDeadline,
            logger: Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }
        )
        // On an executor of its own: the cooperative pool may be kept busy by other tests.
        following = Task(executorPreference: executor) { try? await service.run() }
    }

    func stopFollowing() async {
        following?.cancel()
        await following?.value
        following = nil
    }

    // MARK: Writes through the writer, as cofferd makes them

    @discardableResult
    func put(_ name: String, _ value: String) async -> Result<UInt64, CofferError> {
        await write { store, writer in
            let opened = try store.open(SealedFields(try store.keys.sealFields(["v": value])))
            _ = try writer.put(try ConnectionRef(parsing: name), opened)
        }
    }

    @discardableResult
    func overwrite(_ name: String, _ value: String) async -> Result<UInt64, CofferError> {
        await write { store, writer in
            let opened = try store.open(SealedFields(try store.keys.sealFields(["v": value])))
            _ = try writer.overwrite(try ConnectionRef(parsing: name), opened, expectedVersion: nil)
        }
    }

    func grant(_ workflow: String, _ name: String) async -> Result<UInt64, CofferError> {
        await write { _, writer in _ = try writer.grant(try WorkflowName(workflow), try ConnectionRef(parsing: name)) }
    }

    func revoke(_ workflow: String, _ name: String) async -> Result<UInt64, CofferError> {
        await write { _, writer in try writer.revoke(try WorkflowName(workflow), try ConnectionRef(parsing: name)) }
    }

    /// A grant as a client's request makes it: answered from this node's state only once the log confirms it.
    func requestGrant(_ workflow: String, _ name: String) async -> Result<UInt64, CofferError> {
        await withCheckedContinuation { continuation in
            let revision = Mutex<UInt64>(0)
            commits.submit([
                CommitQueue.Job(
                    usesReserve: false,
                    apply: { writer in
                        _ = try writer.grant(try WorkflowName(workflow), try ConnectionRef(parsing: name))
                        revision.withLock { $0 = writer.lastRevision ?? 0 }
                        return nil
                    },
                    failureRecord: { _ in nil },
                    completion: { outcome in continuation.resume(returning: outcome.map { revision.withLock { $0 } }) }
                )
            ])
        }
    }

    func issueToken(_ workflow: String) async -> Result<IssuedToken, CofferError> {
        await commits.perform { writer in
            try writer.issueToken(for: try WorkflowName(workflow), ttl: .seconds(600), runID: nil)
        }
    }

    func revokeToken(_ id: TokenID) async -> Result<UInt64, CofferError> {
        await write { _, writer in _ = try writer.revokeToken(id: id) }
    }

    /// Runs `change` as one job of the writer; returns the revision it reached.
    private func write(
        _ change: @escaping @Sendable (ConnectionStore, StoreWriter) throws -> Void
    ) async -> Result<UInt64, CofferError> {
        let store = self.store
        return await commits.perform { writer in
            try change(store, writer)
            return writer.lastRevision ?? 0
        }
    }

    /// The value a workflow's token gets here, if this node may serve values now.
    func value(_ name: String, token: SecretBytes) throws(CofferError) -> String {
        try status.checkServingValues(now: Date())
        let ref = try ConnectionRef(parsing: name)
        let values = try store.read { reader in try reader.values(of: ref, for: try reader.verifyToken(token).workflow)
        }
        return values.fields[try FieldName("v")]!.testText
    }

    var revision: UInt64 { store.revision }
}

/// Waits until `condition` holds, for at most `seconds`; whether it did.
func eventually(_ seconds: Double = 10, _ condition: () async throws -> Bool) async rethrows -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if try await condition() { return true }
        try? await Task.sleep(for: .milliseconds(10))
    }
    return try await condition()
}

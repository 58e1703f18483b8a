import CofferCore
import CofferStore
import CofferWire
import Foundation
import Logging
import NIOPosix

/// The request path's decoding, for the fuzzer (`coffer-fuzz`) and its regression corpus: frames are cut from
/// arbitrary bytes with the framing a client's handler uses, and each is decoded, authorised and planned by its
/// handler for both sockets. Nothing is performed, so no input can change the store.
package final class RequestFuzzer: Sendable {
    private let store: ConnectionStore
    private let pipeline: RequestPipeline
    private static let clients = [
        ClientIdentity(socket: .admin, peer: PeerCredentials(pid: 1, uid: 0, gid: 0)),
        ClientIdentity(socket: .worker, peer: PeerCredentials(pid: 2, uid: 1000, gid: 1000)),
    ]

    /// Makes a store in `directory` (which must not hold one) for the handlers to check writes against.
    package init(directory: String) throws {
        store = try DataDirectory(directory).initialize()
        let (journal, _) = try AuditJournal.open(store: store)
        let configuration = ServerConfiguration(
            adminSocket: SocketConfiguration(path: "/unused/admin", mode: 0o600),
            workerSocket: SocketConfiguration(path: "/unused/worker", mode: 0o660),
            adminUIDs: [0]
        )
        // The writer and the thread pool are never started: planning hands them nothing.
        pipeline = RequestPipeline(
            store: store,
            journal: journal,
            commits: CommitQueue(store: store, journal: journal),
            background: NIOThreadPool(numberOfThreads: 1),
            configuration: configuration,
            logger: Logger(label: "fuzz")
        )
    }

    /// Cuts `bytes` into frames and plans each; returns how many frames it found before the bytes ran out or
    /// the framing broke.
    @discardableResult
    package func run(_ bytes: [UInt8]) -> Int {
        var rest = bytes[...]
        var frames = 0
        while case .frame(let length, let prefix) = Framing.header(rest, maxFrameSize: Framing.defaultMaxFrameSize),
            rest.count >= prefix + length
        {
            let body = Array(rest.dropFirst(prefix).prefix(length))
            for client in Self.clients { _ = pipeline.plan(body, client) }
            rest = rest.dropFirst(prefix + length)
            frames += 1
        }
        return frames
    }
}

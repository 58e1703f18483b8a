import CofferCore
import NIOCore
import Synchronization

/// One admitted client, as admission sees it. Its handler keeps `busy` and `lastActive` current without a
/// lock; admission reads them only when it must choose a client to close.
final class ClientSlot: Sendable {
    let channel: any Channel
    let socket: SocketRole
    let uid: UInt32
    /// Serving a request, holding input or answers not yet taken: never closed to make room.
    let busy = Atomic<Bool>(false)
    /// When it last made a request other than Health, in uptime nanoseconds.
    let lastActive: Atomic<Int64>

    init(channel: any Channel, socket: SocketRole, uid: UInt32) {
        self.channel = channel
        self.socket = socket
        self.uid = uid
        lastActive = Atomic(Int64(NIODeadline.now().uptimeNanoseconds))
    }

    func markActive() {
        lastActive.store(Int64(NIODeadline.now().uptimeNanoseconds), ordering: .relaxed)
    }
}

/// Who is served: separate limits for each socket (a flood on the worker socket never takes an admin's
/// place), a per-uid quota on the worker socket, and room made by closing the client idle the longest
/// rather than refusing a new one. Peer credentials are checked before a client gets anything.
final class Admission: Sendable {
    private struct State {
        var clients: [ObjectIdentifier: ClientSlot] = [:]
        var perSocket: [SocketRole: Int] = [:]
        var perUID: [UInt32: Int] = [:]
        var draining = false
        var emptied: [Int: CheckedContinuation<Void, Never>] = [:]
        var nextWaiter = 0
    }

    private let state = Mutex(State())
    private let configuration: ServerConfiguration

    init(configuration: ServerConfiguration) {
        self.configuration = configuration
    }

    enum Decision {
        /// Served; `evicted`, if any, was closed to make room and must be told so.
        case admitted(ClientSlot, evicted: ClientSlot?)
        case refused(CofferError)
    }

    /// Decides on a new client from its kernel credentials.
    func admit(_ channel: any Channel, socket: SocketRole, peer: PeerCredentials) -> Decision {
        if let refusal = refusal(socket, peer) { return .refused(refusal) }
        return state.withLock { state in
            guard !state.draining else {
                return .refused(CofferError(.unavailable, "cofferd is shutting down"))
            }
            var evicted: ClientSlot?
            let limit = socket == .admin ? configuration.maxAdminClients : configuration.maxWorkerClients
            if state.perSocket[socket, default: 0] >= limit {
                guard let victim = Self.idlest(state, socket: socket, uid: nil) else {
                    return .refused(
                        CofferError(
                            .unavailable,
                            "cofferd is serving the most \(socket.rawValue) clients it allows (\(limit)) and none is idle; try again later"
                        )
                    )
                }
                Self.remove(victim, from: &state)
                evicted = victim
            }
            if socket == .worker, evicted == nil,
                state.perUID[peer.uid, default: 0] >= configuration.maxWorkerClientsPerUID
            {
                guard let victim = Self.idlest(state, socket: socket, uid: peer.uid) else {
                    return .refused(
                        CofferError(
                            .unavailable,
                            "uid \(peer.uid) has the most worker clients it may have (\(configuration.maxWorkerClientsPerUID)) and none is idle; try again later"
                        )
                    )
                }
                Self.remove(victim, from: &state)
                evicted = victim
            }
            let slot = ClientSlot(channel: channel, socket: socket, uid: peer.uid)
            state.clients[ObjectIdentifier(channel)] = slot
            state.perSocket[socket, default: 0] += 1
            if socket == .worker { state.perUID[peer.uid, default: 0] += 1 }
            return .admitted(slot, evicted: evicted)
        }
    }

    /// Why a client may not be served at all, whatever the load.
    private func refusal(_ socket: SocketRole, _ peer: PeerCredentials) -> CofferError? {
        switch socket {
        case .admin:
            guard configuration.adminUIDs.contains(peer.uid) else {
                return CofferError(.permissionDenied, "uid \(peer.uid) may not use the admin socket")
            }
        case .worker:
            if !configuration.workerUIDs.isEmpty || !configuration.workerGIDs.isEmpty,
                !configuration.workerUIDs.contains(peer.uid), !configuration.workerGIDs.contains(peer.gid)
            {
                return CofferError(.permissionDenied, "uid \(peer.uid) may not use the worker socket")
            }
        }
        return nil
    }

    /// The client to close to make room: not busy, the longest without a request other than Health.
    private static func idlest(_ state: State, socket: SocketRole, uid: UInt32?) -> ClientSlot? {
        var best: ClientSlot?
        var oldest = Int64.max
        for slot in state.clients.values where slot.socket == socket && (uid == nil || slot.uid == uid) {
            guard !slot.busy.load(ordering: .relaxed) else { continue }
            let active = slot.lastActive.load(ordering: .relaxed)
            if active < oldest {
                oldest = active
                best = slot
            }
        }
        return best
    }

    private static func remove(_ slot: ClientSlot, from state: inout State) {
        guard state.clients.removeValue(forKey: ObjectIdentifier(slot.channel)) != nil else { return }
        state.perSocket[slot.socket, default: 1] -= 1
        if slot.socket == .worker {
            state.perUID[slot.uid, default: 1] -= 1
            if state.perUID[slot.uid] == 0 { state.perUID[slot.uid] = nil }
        }
    }

    /// A client has gone.
    func remove(_ slot: ClientSlot) {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            Self.remove(slot, from: &state)
            guard state.clients.isEmpty else { return [] }
            defer { state.emptied = [:] }
            return Array(state.emptied.values)
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Admits no one from now on; returns the clients being served, to be drained.
    func beginDrain() -> [ClientSlot] {
        state.withLock { state in
            state.draining = true
            return Array(state.clients.values)
        }
    }

    /// Returns once every client has gone, or when the task is cancelled (the grace period ended).
    func waitUntilEmpty() async {
        let token = state.withLock { state -> Int in
            state.nextWaiter += 1
            return state.nextWaiter
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let resumeNow = state.withLock { state -> Bool in
                    if state.clients.isEmpty || Task.isCancelled { return true }
                    state.emptied[token] = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            state.withLock { $0.emptied.removeValue(forKey: token) }?.resume()
        }
    }

    /// Whether the server has begun to drain: a client admitted just before must drain at once.
    var isDraining: Bool { state.withLock { $0.draining } }

    /// Every client being served.
    var clients: [ClientSlot] { state.withLock { Array($0.clients.values) } }

    var count: Int { state.withLock { $0.clients.count } }

    /// Clients admitted on `socket`.
    func count(_ socket: SocketRole) -> Int { state.withLock { $0.perSocket[socket, default: 0] } }
}

import CofferCore
import NIOCore
import NIOEmbedded
import Testing

@testable import CofferServer

@Suite struct AdmissionTests {
    func configuration(_ adjust: (inout ServerConfiguration) -> Void = { _ in }) -> ServerConfiguration {
        var configuration = ServerConfiguration(
            adminSocket: SocketConfiguration(path: "/a", mode: 0o600),
            workerSocket: SocketConfiguration(path: "/w", mode: 0o660),
            adminUIDs: [0]
        )
        configuration.maxAdminClients = 2
        configuration.maxWorkerClients = 3
        configuration.maxWorkerClientsPerUID = 2
        adjust(&configuration)
        return configuration
    }

    func peer(_ uid: UInt32, gid: UInt32 = 100) -> PeerCredentials { PeerCredentials(pid: 1, uid: uid, gid: gid) }

    @discardableResult
    func admitted(
        _ admission: Admission,
        _ socket: SocketRole,
        _ peer: PeerCredentials
    ) throws -> (ClientSlot, ClientSlot?) {
        guard case .admitted(let slot, let evicted) = admission.admit(EmbeddedChannel(), socket: socket, peer: peer)
        else {
            throw CofferError(.internal, "refused")
        }
        return (slot, evicted)
    }

    func refusal(_ admission: Admission, _ socket: SocketRole, _ peer: PeerCredentials) -> CofferError? {
        if case .refused(let error) = admission.admit(EmbeddedChannel(), socket: socket, peer: peer) { return error }
        return nil
    }

    @Test func aFullSocketClosesItsIdlestClientAndRefusesWhenAllAreBusy() throws {
        let admission = Admission(configuration: configuration())
        let (a, _) = try admitted(admission, .worker, peer(1))
        let (b, _) = try admitted(admission, .worker, peer(2))
        let (c, _) = try admitted(admission, .worker, peer(3))
        // All idle: the one active longest ago makes room.
        b.markActive()
        c.markActive()
        let (d, evicted) = try admitted(admission, .worker, peer(4))
        #expect(evicted === a)
        // All busy: the newcomer is refused, and nobody is closed.
        for slot in [b, c, d] { slot.busy.store(true, ordering: .relaxed) }
        let refused = refusal(admission, .worker, peer(5))
        #expect(refused?.code == .unavailable)
        #expect(refused?.message.contains("none is idle") == true)
        #expect(admission.count == 3)
    }

    @Test func theWorkerSocketNeverTakesTheAdminsPlaces() throws {
        let admission = Admission(configuration: configuration())
        for uid: UInt32 in 1...3 {
            let (slot, _) = try admitted(admission, .worker, peer(uid))
            slot.busy.store(true, ordering: .relaxed)
        }
        #expect(refusal(admission, .worker, peer(9))?.code == .unavailable)
        try admitted(admission, .admin, peer(0))
        try admitted(admission, .admin, peer(0))
    }

    @Test func oneUIDMakesRoomAmongItsOwnClients() throws {
        let admission = Admission(configuration: configuration { $0.maxWorkerClients = 10 })
        let (other, _) = try admitted(admission, .worker, peer(7))
        let (first, _) = try admitted(admission, .worker, peer(1))
        let (second, _) = try admitted(admission, .worker, peer(1))
        second.markActive()
        other.lastActive.store(0, ordering: .relaxed)
        // uid 1 is at its quota: its own idlest client goes, not uid 7's older one.
        let (_, evicted) = try admitted(admission, .worker, peer(1))
        #expect(evicted === first)
        second.busy.store(true, ordering: .relaxed)
        #expect(admission.count == 3)
    }

    @Test func allowListsAreCheckedFromTheKernelsCredentials() {
        let admission = Admission(
            configuration: configuration {
                $0.workerUIDs = [1000]
                $0.workerGIDs = [50]
            }
        )
        #expect(refusal(admission, .admin, peer(1000))?.code == .permissionDenied)
        #expect(refusal(admission, .worker, peer(1000)) == nil)
        #expect(refusal(admission, .worker, peer(2000, gid: 50)) == nil)
        let stranger = refusal(admission, .worker, peer(2000, gid: 60))
        #expect(stranger?.code == .permissionDenied)
        #expect(stranger?.message == "uid 2000 may not use the worker socket")
    }

    @Test func drainingAdmitsNoOne() throws {
        let admission = Admission(configuration: configuration())
        let (slot, _) = try admitted(admission, .worker, peer(1))
        #expect(admission.beginDrain().count == 1)
        #expect(refusal(admission, .worker, peer(2))?.code == .unavailable)
        admission.remove(slot)
        #expect(admission.count == 0)
    }
}

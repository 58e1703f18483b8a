import CofferCore
import CofferWire
import Foundation

/// One request as the pipeline and its handler see it: who sent it, on which socket, and its audit record,
/// which the handler fills as it validates its inputs. Only validated values go in, so nothing a client
/// sends (a value pasted in the wrong field, a token) can reach the trail.
struct RequestContext: Sendable {
    let id: UInt64
    let peer: PeerCredentials
    var event: AuditEvent
    /// For a Watch: what it asked, for the client's handler to follow once its first event is answered.
    var watch: WatchSpec?

    init(id: UInt64, socket: SocketRole, action: AuditAction, peer: PeerCredentials, time: Date) {
        self.id = id
        self.peer = peer
        event = AuditEvent(time: time, socket: socket, action: action, peerUID: peer.uid, peerPID: peer.pid)
    }

    mutating func connection(_ text: String) throws(CofferError) -> ConnectionRef {
        let ref = try ConnectionRef(parsing: text)
        event.connection = ref
        return ref
    }

    mutating func workflow(_ text: String) throws(CofferError) -> WorkflowName {
        let name = try WorkflowName(text)
        event.workflow = name
        return name
    }

    mutating func tokenID(_ text: String) throws(CofferError) -> TokenID {
        let id = try TokenID(text)
        event.tokenID = id
        return id
    }

    mutating func runID(_ text: String) throws(CofferError) -> RunID? {
        guard !text.isEmpty else { return nil }
        let id = try RunID(text)
        event.runID = id
        return id
    }
}

extension OperationHandler {
    /// The error for a request whose payload is not this handler's: the pipeline never sends one.
    func mismatch() -> CofferError {
        CofferError(.internal, "\(operation.rawValue) was handed another operation's request")
    }
}

import CofferCore
import CofferCrypto
import CofferWire
import Foundation

/// One event of a watch (see `CofferWorkerClient.watch`).
public struct WatchEvent: Sendable {
    public enum Kind: String, Sendable {
        /// The watch follows changes after `revision`.
        case started
        /// A watched connection was created, changed or granted: `version`, and `values` when asked for and
        /// still current.
        case changed
        case deleted
        /// The workflow's grant for `connection` was revoked.
        case inaccessible
        /// Nothing changed up to `revision`.
        case heartbeat
        /// Changes after the revision asked for are no longer kept: get what you need again; the watch
        /// follows changes after `revision`.
        case restart
        /// The watch is over: `reason`; resume with the last revision seen.
        case ended
    }

    public var kind: Kind
    public var revision: UInt64
    public var connection: ConnectionRef?
    public var version: UInt64
    public var values: ConnectionValues?
    public var reason: String

    init(_ wire: Coffer_V1_WatchEvent) throws(CofferError) {
        switch wire.kind {
        case .started: kind = .started
        case .changed: kind = .changed
        case .deleted: kind = .deleted
        case .inaccessible: kind = .inaccessible
        case .heartbeat: kind = .heartbeat
        case .restart: kind = .restart
        case .ended: kind = .ended
        case .unspecified, .UNRECOGNIZED: throw CofferError(.internal, "cofferd sent a watch event of no known kind")
        }
        revision = wire.revision
        version = wire.version
        reason = wire.reason
        do {
            connection = wire.connection.isEmpty ? nil : try ConnectionRef(parsing: wire.connection)
        } catch {
            throw CofferError(.internal, "cofferd sent a malformed connection", cause: error)
        }
        values = nil
        if let connection, !wire.fields.isEmpty {
            var response = Coffer_V1_GetResponse()
            response.connection = connection.description
            response.version = wire.version
            response.fields = wire.fields
            values = try ConnectionValues(response)
        }
    }
}

extension CofferWorkerClient {
    /// Watches `connections` (none: every connection the token's workflow is granted), with their values when
    /// `withValues`, after `revision` (0: from now), handing each event to `onEvent` until it returns false or
    /// the watch ends (the ENDED event is handed over, then this returns). Blocks; the socket is the watch's.
    public func watch(
        _ connections: [ConnectionRef] = [],
        token: SecretBytes,
        withValues: Bool = false,
        after revision: UInt64 = 0,
        onEvent: (WatchEvent) throws(CofferError) -> Bool
    ) throws(CofferError) {
        var request = Coffer_V1_WatchRequest()
        request.token = token.withUnsafeBytes { String(decoding: $0, as: UTF8.self) }
        request.connections = connections.map(\.description)
        request.withValues = withValues
        request.afterRevision = revision
        var envelope = Coffer_V1_Request()
        envelope.operation = .watch(request)
        try socket.stream(envelope) { response throws(CofferError) in
            if let error = response.status.error { throw error }
            guard case .watchEvent(let wire)? = response.result else {
                throw CofferError(.internal, "cofferd answered a watch with another operation's result")
            }
            let event = try WatchEvent(wire)
            return try onEvent(event) && event.kind != .ended
        }
    }
}

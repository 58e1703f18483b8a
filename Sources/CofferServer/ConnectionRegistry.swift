import NIOCore
import Synchronization

/// The connections being served, so that shutdown can close the idle ones at once and the busy ones after
/// their response, and so that the connection limit holds across both sockets.
final class ConnectionRegistry: Sendable {
    private struct Entry {
        var channel: any Channel
        var busy: Bool
    }

    private struct State {
        var entries: [ObjectIdentifier: Entry] = [:]
        var draining = false
    }

    private let state = Mutex(State())
    let limit: Int

    init(limit: Int) { self.limit = limit }

    /// Registers a connection; false when the limit is reached or cofferd is shutting down.
    func admit(_ channel: any Channel) -> Bool {
        state.withLock { state in
            guard !state.draining, state.entries.count < limit else { return false }
            state.entries[ObjectIdentifier(channel)] = Entry(channel: channel, busy: false)
            return true
        }
    }

    func remove(_ channel: any Channel) {
        state.withLock { _ = $0.entries.removeValue(forKey: ObjectIdentifier(channel)) }
    }

    /// Marks a connection busy with a request; false when cofferd is shutting down and it should stop.
    func beginRequest(_ channel: any Channel) -> Bool {
        state.withLock { state in
            guard !state.draining else { return false }
            state.entries[ObjectIdentifier(channel)]?.busy = true
            return true
        }
    }

    /// Marks a connection idle again; false when cofferd is shutting down and it should close.
    func endRequest(_ channel: any Channel) -> Bool {
        state.withLock { state in
            state.entries[ObjectIdentifier(channel)]?.busy = false
            return !state.draining
        }
    }

    /// Stops admitting connections and closes every idle one; busy ones close after their response.
    func drain() {
        let idle = state.withLock { state -> [any Channel] in
            state.draining = true
            return state.entries.values.filter { !$0.busy }.map(\.channel)
        }
        for channel in idle { channel.close(promise: nil) }
    }

    /// Closes every connection, busy or not.
    func closeAll() {
        let all = state.withLock { $0.entries.values.map(\.channel) }
        for channel in all { channel.close(promise: nil) }
    }

    var count: Int { state.withLock { $0.entries.count } }
}

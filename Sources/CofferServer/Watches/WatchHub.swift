import CofferCore
import Synchronization

/// Every open watch, and the hand-off of committed changes to them: the writer calls `publish` after each
/// commit, in revision order, and each session takes them on its own event loop, in that order.
final class WatchHub: Sendable {
    private struct State {
        var sessions: [ObjectIdentifier: WatchSession] = [:]
        var perToken: [TokenID: Int] = [:]
    }

    private let state = Mutex(State())
    let maxWatches: Int
    let maxPerToken: Int

    init(maxWatches: Int, maxPerToken: Int) {
        self.maxWatches = maxWatches
        self.maxPerToken = maxPerToken
    }

    /// Admits a session of `token`; RESOURCE_EXHAUSTED past the limits.
    func register(_ session: WatchSession, token: TokenID) throws(CofferError) {
        let refusal: CofferError? = state.withLock { state in
            if state.sessions.count >= maxWatches {
                return CofferError(.resourceExhausted, "cofferd has \(maxWatches) watches open, as many as it allows")
            }
            if state.perToken[token, default: 0] >= maxPerToken {
                return CofferError(.resourceExhausted, "this token has \(maxPerToken) watches open, as many as it may")
            }
            state.sessions[ObjectIdentifier(session)] = session
            state.perToken[token, default: 0] += 1
            return nil
        }
        if let refusal { throw refusal }
    }

    /// RESOURCE_EXHAUSTED when a watch of `token` would not be admitted now (the Watch's answer says so; the
    /// session's registration decides).
    func checkRoom(for token: TokenID) throws(CofferError) {
        let (all, mine) = state.withLock { ($0.sessions.count, $0.perToken[token, default: 0]) }
        if all >= maxWatches {
            throw CofferError(.resourceExhausted, "cofferd has \(maxWatches) watches open, as many as it allows")
        }
        if mine >= maxPerToken {
            throw CofferError(.resourceExhausted, "this token has \(maxPerToken) watches open, as many as it may")
        }
    }

    func remove(_ session: WatchSession, token: TokenID) {
        state.withLock { state in
            guard state.sessions.removeValue(forKey: ObjectIdentifier(session)) != nil else { return }
            state.perToken[token, default: 1] -= 1
            if state.perToken[token] == 0 { state.perToken.removeValue(forKey: token) }
        }
    }

    /// Hands committed changes to every session, on its loop.
    func publish(_ events: [ChangeEvent]) {
        let sessions = state.withLock { Array($0.sessions.values) }
        for session in sessions { session.loop.execute { session.take(events) } }
    }

    var count: Int { state.withLock { $0.sessions.count } }
}

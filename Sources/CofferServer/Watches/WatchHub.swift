import CofferCore
import Synchronization

/// Every open watch, and the hand-off of committed changes to them: the writer calls `publish` after each
/// commit, in revision order, and each session takes them on its own event loop, in that order.
///
/// A watch's place is taken when its Watch is answered (`reserve`, in the same read that checks the token), so
/// that a Watch past a limit is refused with RESOURCE_EXHAUSTED and a Watch answered STARTED has its place; the
/// session that follows takes the place over (`register`) and gives it back when it ends.
final class WatchHub: Sendable {
    private struct State {
        var sessions: [ObjectIdentifier: WatchSession] = [:]
        /// Places taken, by sessions and by Watches answered whose session has not started yet.
        var places = 0
        var perToken: [TokenID: Int] = [:]
    }

    private let state = Mutex(State())
    let maxWatches: Int
    let maxPerToken: Int

    init(maxWatches: Int, maxPerToken: Int) {
        self.maxWatches = maxWatches
        self.maxPerToken = maxPerToken
    }

    /// Takes a place for a watch of `token`; RESOURCE_EXHAUSTED past the limits.
    func reserve(for token: TokenID) throws(CofferError) -> WatchPlace {
        let refusal: CofferError? = state.withLock { state in
            if state.places >= maxWatches {
                return CofferError(.resourceExhausted, "cofferd has \(maxWatches) watches open, as many as it allows")
            }
            if state.perToken[token, default: 0] >= maxPerToken {
                return CofferError(.resourceExhausted, "this token has \(maxPerToken) watches open, as many as it may")
            }
            state.places += 1
            state.perToken[token, default: 0] += 1
            return nil
        }
        if let refusal { throw refusal }
        return WatchPlace(hub: self, token: token)
    }

    /// Gives a place back.
    fileprivate func release(_ token: TokenID) {
        state.withLock { state in
            state.places -= 1
            state.perToken[token, default: 1] -= 1
            if state.perToken[token] == 0 { state.perToken.removeValue(forKey: token) }
        }
    }

    /// The session following a Watch takes over its place; false when the place was given back already.
    func register(_ session: WatchSession, place: WatchPlace) -> Bool {
        guard place.handOver() else { return false }
        state.withLock { $0.sessions[ObjectIdentifier(session)] = session }
        return true
    }

    /// A session ends: its place is given back.
    func remove(_ session: WatchSession, token: TokenID) {
        let removed = state.withLock { $0.sessions.removeValue(forKey: ObjectIdentifier(session)) != nil }
        if removed { release(token) }
    }

    /// Hands committed changes to every session, on its loop.
    func publish(_ events: [ChangeEvent]) {
        let sessions = state.withLock { Array($0.sessions.values) }
        for session in sessions { session.loop.execute { session.take(events) } }
    }

    var count: Int { state.withLock { $0.sessions.count } }
}

/// A place among the open watches, taken for a token by a Watch's answer; given back when released, or when the
/// last reference to it goes without a session having taken it over.
final class WatchPlace: Sendable {
    let token: TokenID
    private let hub: WatchHub
    private let held = Atomic<Bool>(true)

    fileprivate init(hub: WatchHub, token: TokenID) {
        self.hub = hub
        self.token = token
    }

    /// Gives the place back, once.
    func release() {
        if held.exchange(false, ordering: .acquiringAndReleasing) { hub.release(token) }
    }

    /// The place passes to a session, which gives it back when it ends; false when it was given back already.
    fileprivate func handOver() -> Bool { held.exchange(false, ordering: .acquiringAndReleasing) }

    deinit { release() }
}

/// Where a Watch's place goes from the read that took it to the session that follows: the read may run again
/// on a fresh snapshot, and takes a place only once.
final class WatchPlaceBox: Sendable {
    private let place = Mutex<WatchPlace?>(nil)

    func take(for token: TokenID, from hub: WatchHub) throws(CofferError) {
        if place.withLock({ $0?.token == token }) { return }
        let taken = try hub.reserve(for: token)
        place.withLock { $0 = taken }
    }

    var current: WatchPlace? { place.withLock { $0 } }

    /// The Watch was not answered STARTED: its place goes back now.
    func release() { place.withLock { $0 }?.release() }
}

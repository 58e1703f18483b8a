import CofferClient
import CofferCore
import CofferCrypto
import CofferTestSupport
import Foundation
import Testing

/// Watch against the real cofferd: each change once, in order; access taken away and a revoked token end what
/// they should; a watch that reconnects with its last revision misses and repeats nothing; one from before the
/// oldest change kept is told to start over; the limits hold.
@Suite struct WatchTests {
    /// Events a watch running on its own thread has received, and a way to wait for them.
    final class Collector: @unchecked Sendable {
        private let condition = NSCondition()
        private var events: [WatchEvent] = []
        private var finished: CofferError??

        var received: [WatchEvent] { condition.withLock { events } }

        func add(_ event: WatchEvent) {
            condition.withLock {
                events.append(event)
                condition.broadcast()
            }
        }

        func finish(_ error: CofferError?) {
            condition.withLock {
                finished = .some(error)
                condition.broadcast()
            }
        }

        /// Waits up to 10 s until `done` holds for the events so far.
        @discardableResult
        func wait(_ done: ([WatchEvent]) -> Bool) -> [WatchEvent] {
            condition.withLock {
                let deadline = Date().addingTimeInterval(10)
                while !done(events), finished == nil, condition.wait(until: deadline) {}
                return events
            }
        }

        /// Whether the watch returned without an error.
        var endedCleanly: Bool {
            if case .some(.none) = waitFinished() { return true }
            return false
        }

        func waitFinished() -> CofferError?? {
            condition.withLock {
                let deadline = Date().addingTimeInterval(10)
                while finished == nil, condition.wait(until: deadline) {}
                return finished
            }
        }
    }

    /// Starts a watch on its own thread; the collector gets every event until it ends.
    static func watch(
        _ daemon: CofferdProcess,
        _ connections: [String] = [],
        token: String,
        withValues: Bool = false,
        after: UInt64 = 0,
        until stop: @escaping @Sendable (WatchEvent) -> Bool = { _ in false }
    ) -> Collector {
        let collector = Collector()
        let thread = Thread {
            do {
                let worker = try CofferWorkerClient(socketPath: daemon.workerSocket)
                try worker.watch(
                    try connections.map { text throws(CofferError) in try ConnectionRef(parsing: text) },
                    token: SecretBytes(utf8: token),
                    withValues: withValues,
                    after: after
                ) { event in
                    collector.add(event)
                    return !stop(event)
                }
                collector.finish(nil)
            } catch {
                collector.finish(error as? CofferError)
            }
        }
        thread.start()
        return collector
    }

    func values(_ text: String) throws -> [FieldName: SecretBytes] { [try FieldName("v"): SecretBytes(utf8: text)] }

    @Test func aWatchGetsEachChangeOnceInOrderAndEndsWhenItsTokenIsRevoked() throws {
        let daemon = try CofferdProcess(arguments: ["--watch-heartbeat", "1"])
        let admin = try CofferAdminClient(socketPath: daemon.adminSocket)
        let canary = Canary("watched")
        for name in ["a", "b"] {
            try admin.put(try ConnectionRef(parsing: "generic/\(name)"), values: try values("\(canary.text)-\(name)1"))
            try admin.grant(try WorkflowName("deploy"), try ConnectionRef(parsing: "generic/\(name)"))
        }
        let issued = try admin.issueToken(for: try WorkflowName("deploy"))
        let token = issued.token.withUnsafeBytes { String(decoding: $0, as: UTF8.self) }
        let collector = Self.watch(daemon, token: token, withValues: true)
        #expect(collector.wait { !$0.isEmpty }.first?.kind == .started)

        try admin.overwrite(try ConnectionRef(parsing: "generic/a"), values: try values("\(canary.text)-a2"))
        try admin.put(try ConnectionRef(parsing: "generic/c"), values: try values("c"))  // not granted: nothing
        try admin.grant(try WorkflowName("deploy"), try ConnectionRef(parsing: "generic/c"))
        try admin.grant(try WorkflowName("other"), try ConnectionRef(parsing: "generic/a"))  // another workflow
        try admin.revoke(try WorkflowName("deploy"), try ConnectionRef(parsing: "generic/b"))
        try admin.overwrite(try ConnectionRef(parsing: "generic/b"), values: try values("b2"))  // no longer granted
        try admin.delete(try ConnectionRef(parsing: "generic/a"))
        try admin.revokeToken(id: issued.info.id)

        let events = collector.wait { $0.last?.kind == .ended }.filter { $0.kind != .heartbeat }
        #expect(events.map(\.kind) == [.started, .changed, .changed, .inaccessible, .deleted, .ended])
        #expect(
            events.map { $0.connection?.description ?? "-" } == [
                "-", "generic/a", "generic/c", "generic/b", "generic/a", "-",
            ]
        )
        let revisions = events.dropFirst().dropLast().map(\.revision)
        #expect(revisions == revisions.sorted() && Set(revisions).count == revisions.count)
        #expect(events[1].version == 2)
        #expect(events[1].values?.fields[try FieldName("v")]?.testText == "\(canary.text)-a2")
        #expect(events[2].values?.fields[try FieldName("v")]?.testText == "c")
        #expect(events.last?.reason == "the token was revoked")
        #expect(collector.endedCleanly)

        // Each delivery with values was audited as a Get of that connection, with the token's id.
        let gets = try admin.audit().records.filter { $0.action == .operation(.get) }
        #expect(gets.compactMap { $0.connection?.description } == ["generic/a", "generic/c"])
        #expect(gets.allSatisfy { $0.tokenID == issued.info.id && $0.outcome == .ok })
        let watches = try admin.audit().records.filter { $0.action == .operation(.watch) }
        #expect(watches.count == 1)
        #expect(!canary.occurs(in: daemon.output))
        #expect(daemon.stop() == 0)
    }

    @Test func aWatchThatResumesAfterItsLastRevisionMissesAndRepeatsNothing() throws {
        let daemon = try CofferdProcess()
        let admin = try CofferAdminClient(socketPath: daemon.adminSocket)
        try admin.put(try ConnectionRef(parsing: "generic/x"), values: try values("0"))
        try admin.grant(try WorkflowName("deploy"), try ConnectionRef(parsing: "generic/x"))
        let token = try admin.issueToken(for: try WorkflowName("deploy")).token
            .withUnsafeBytes { String(decoding: $0, as: UTF8.self) }

        var seen: [UInt64: UInt64] = [:]  // revision -> version
        let first = Self.watch(daemon, ["generic/x"], token: token) { $0.kind == .started }
        #expect(first.endedCleanly)
        var last = try #require(first.received.first?.revision)
        for round in 1...5 {
            // Changes while nobody watches.
            for n in 0..<3 {
                try admin.overwrite(try ConnectionRef(parsing: "generic/x"), values: try values("\(round)-\(n)"))
            }
            let target = admin.socket.lastRevision
            let collector = Self.watch(daemon, ["generic/x"], token: token, after: last) {
                $0.revision >= target && $0.kind == .changed
            }
            collector.waitFinished()
            for event in collector.received where event.kind == .changed {
                #expect(seen[event.revision] == nil, "revision \(event.revision) delivered twice")
                seen[event.revision] = event.version
                last = event.revision
            }
        }
        // Every overwrite, once: versions 2 to 16, at consecutive revisions after the put, the grant and the
        // token's issue (1 to 3).
        #expect(seen.values.sorted() == Array(2...16))
        #expect(seen.keys.sorted() == Array(4...18))
        #expect(daemon.stop() == 0)
    }

    @Test func aWatchFromBeforeTheOldestKeptChangeIsToldToStartOverAndLimitsHold() throws {
        let daemon = try CofferdProcess(arguments: ["--max-changes", "4", "--max-watches-per-token", "2"])
        let admin = try CofferAdminClient(socketPath: daemon.adminSocket)
        try admin.put(try ConnectionRef(parsing: "generic/x"), values: try values("0"))
        try admin.grant(try WorkflowName("deploy"), try ConnectionRef(parsing: "generic/x"))
        for n in 1...6 { try admin.overwrite(try ConnectionRef(parsing: "generic/x"), values: try values("\(n)")) }
        let token = try admin.issueToken(for: try WorkflowName("deploy")).token
            .withUnsafeBytes { String(decoding: $0, as: UTF8.self) }
        let head = admin.socket.lastRevision
        let stale = Self.watch(daemon, token: token, after: 1) { $0.kind == .restart }
        stale.waitFinished()
        #expect(stale.received.map(\.kind) == [.started, .restart])
        #expect(stale.received.last?.revision == head)

        // Two watches of one token are allowed; a third is refused, and the refusal names the limit.
        let first = Self.watch(daemon, token: token)
        let second = Self.watch(daemon, token: token)
        first.wait { !$0.isEmpty }
        second.wait { !$0.isEmpty }
        let third = Self.watch(daemon, token: token)
        let refused = third.waitFinished()
        #expect(refused??.code == .resourceExhausted && refused??.message.contains("2 watches") == true)
        // Ungranted or unknown connections are refused before anything is watched.
        let ungranted = Self.watch(daemon, ["generic/nothing"], token: token).waitFinished()
        #expect(ungranted??.code == .permissionDenied)
        #expect(daemon.stop() == 0)
        #expect(first.endedCleanly && first.received.last?.reason.contains("stopping") == true)
    }

    @Test func watchesOpenedAtOnceAtTheLimitsAreRefusedAndNoOpenOneIsEnded() throws {
        let daemon = try CofferdProcess(arguments: ["--max-watches-per-token", "3", "--max-watches", "5"])
        let admin = try CofferAdminClient(socketPath: daemon.adminSocket)
        try admin.put(try ConnectionRef(parsing: "generic/x"), values: try values("0"))
        for workflow in ["deploy", "build"] {
            try admin.grant(try WorkflowName(workflow), try ConnectionRef(parsing: "generic/x"))
        }
        let tokens = try ["deploy", "deploy", "build"].map { workflow in
            try admin.issueToken(for: try WorkflowName(workflow)).token
                .withUnsafeBytes { String(decoding: $0, as: UTF8.self) }
        }
        // Twelve at once over three tokens, for five places: each Watch is either STARTED and stays open (and
        // hears the next change), or refused with RESOURCE_EXHAUSTED.
        let watches = (0..<12).map { index in Self.watch(daemon, token: tokens[index % 3]) }
        usleep(1_000_000)
        try admin.overwrite(try ConnectionRef(parsing: "generic/x"), values: try values("1"))
        var started = 0
        var refused = 0
        for watch in watches {
            let events = watch.wait { $0.contains { $0.kind == .changed } }
            if events.first?.kind == .started {
                started += 1
                #expect(!events.contains { $0.kind == .ended }, "an open watch was ended: \(events.map(\.reason))")
                #expect(events.contains { $0.kind == .changed })
            } else {
                let error = watch.waitFinished()
                #expect(error??.code == .resourceExhausted, "\(String(describing: error))")
                refused += 1
            }
        }
        #expect(started == 5 && refused == 7)
        #expect(daemon.stop() == 0)
    }
}

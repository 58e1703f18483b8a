import CofferCore
import CofferStore
import Foundation
import Testing

/// The two judgements a cluster node makes on its own: where it stands against one read of the log
/// (`LogVerdict`), and whether it may serve values and take writes (`ReplicationStatus`).
@Suite struct ReplicationRulesTests {
    func entry(_ first: UInt64, _ last: UInt64, link: UInt8) -> ReplicationEntry {
        ReplicationEntry(first: first, last: last, batch: [], link: [UInt8](repeating: link, count: 16))
    }

    func position(_ revision: UInt64, link: UInt8) -> LogPosition {
        LogPosition(revision: revision, link: [UInt8](repeating: link, count: 16))
    }

    @Test func aLogReadAfterTheNodesPositionIsJudgedAgainstIt() {
        let node = position(10, link: 7)
        // The same head and link: current, whatever the node wrote since (it was read after the position).
        #expect(LogVerdict.of(node: node, slice: LogSlice(head: 10, headLink: node.link, entries: [])) == .current)
        // More after it: behind, with what to apply.
        let more = [entry(11, 12, link: 1), entry(13, 13, link: 2)]
        #expect(
            LogVerdict.of(node: node, slice: LogSlice(head: 13, headLink: more[1].link, entries: more))
                == .behind(entries: more)
        )
        // A head behind the node, another batch at its revision, a head whose batch is gone, a gap: refused.
        #expect(
            LogVerdict.of(node: node, slice: LogSlice(head: 9, headLink: nil, entries: [])).failure?.code == .dataLoss
        )
        let rewritten = LogVerdict.of(node: node, slice: LogSlice(head: 10, headLink: [0], entries: []))
        #expect(rewritten == .refused(.diverged(at: 10)))
        #expect(
            LogVerdict.of(node: node, slice: LogSlice(head: 10, headLink: nil, entries: []))
                == .refused(.missingHead(head: 10))
        )
        let gap = LogVerdict.of(node: node, slice: LogSlice(head: 14, headLink: nil, entries: [entry(12, 14, link: 3)]))
        #expect(gap.failure?.message.contains("from this node's revision 10 to 12") == true)
        let cut = LogVerdict.of(node: node, slice: LogSlice(head: 14, headLink: nil, entries: []))
        #expect(cut.failure?.message.contains("its rows were removed") == true)
        // An empty log and a new node.
        #expect(LogVerdict.of(node: .start, slice: LogSlice(head: 0, headLink: nil, entries: [])) == .current)
    }

    @Test func aNodeThatLearnsItIsBehindServesValuesForMaxLagThenRefusesThemUntilItCatchesUp() throws {
        let status = ReplicationStatus(maxLag: .seconds(1), staleAfter: .seconds(60))
        let start = Date(timeIntervalSince1970: 1_000_000)
        #expect(throws: CofferError.self) { try status.checkServingValues(now: start) }  // never caught up
        status.read(started: start, head: 5, applied: 5)
        try status.checkServingValues(now: start.addingTimeInterval(0.5))
        #expect(status.state(now: start) == .current)
        status.notified(revision: 6, at: start.addingTimeInterval(1))
        try status.checkServingValues(now: start.addingTimeInterval(1.9))
        #expect(throws: CofferError.self) { try status.checkServingValues(now: start.addingTimeInterval(2.1)) }
        #expect(status.state(now: start.addingTimeInterval(2.1)) == .catchingUp)
        // A read that began after the notification and brought everything: current again.
        status.read(started: start.addingTimeInterval(2.2), head: 6, applied: 6)
        try status.checkServingValues(now: start.addingTimeInterval(2.3))
    }

    @Test func aNotificationDuringAReadStillCountsAsNews() throws {
        let status = ReplicationStatus(maxLag: .seconds(1), staleAfter: .seconds(60))
        let start = Date(timeIntervalSince1970: 1_000_000)
        status.read(started: start, head: 5, applied: 5)
        // A read begins at 10 s; a notification comes at 10.1 s; the read ends with what it saw.
        status.notified(revision: 6, at: start.addingTimeInterval(10.1))
        status.read(started: start.addingTimeInterval(10), head: 5, applied: 5)
        #expect(throws: CofferError.self) { try status.checkServingValues(now: start.addingTimeInterval(11.5)) }
    }

    @Test func aNodeCutOffFromTheDatabaseServesUntilStaleAfterUnlessItKnowsItIsBehind() throws {
        let status = ReplicationStatus(maxLag: .seconds(1), staleAfter: .seconds(60))
        let start = Date(timeIntervalSince1970: 1_000_000)
        status.read(started: start, head: 5, applied: 5)
        status.unreachable("the database cannot be used")
        #expect(status.state(now: start) == .unreachable("the database cannot be used"))
        try status.checkServingValues(now: start.addingTimeInterval(59))
        #expect(throws: CofferError.self) { try status.checkServingValues(now: start.addingTimeInterval(61)) }
        #expect(throws: CofferError.self) { try status.checkWriting() }
        // A restart during the outage: it served what it had, and goes on serving it; but news it cannot apply
        // limits it to max-lag.
        let restarted = ReplicationStatus(maxLag: .seconds(1), staleAfter: .seconds(60))
        restarted.resume(applied: 5, caughtUp: start, now: start.addingTimeInterval(10))
        restarted.unreachable("the database cannot be used")
        try restarted.checkServingValues(now: start.addingTimeInterval(30))
        restarted.notified(revision: 6, at: start.addingTimeInterval(31))
        #expect(throws: CofferError.self) { try restarted.checkServingValues(now: start.addingTimeInterval(33)) }
    }

    @Test func aFailedNodeServesNoValueAndTakesNoWriteUntilItIsMended() throws {
        let status = ReplicationStatus(maxLag: .seconds(1), staleAfter: .seconds(60))
        let start = Date(timeIntervalSince1970: 1_000_000)
        status.read(started: start, head: 5, applied: 5)
        status.fail("the cluster's log was rolled back")
        #expect(status.state(now: start) == .failed("the cluster's log was rolled back"))
        #expect(throws: CofferError.self) { try status.checkServingValues(now: start) }
        #expect(throws: CofferError.self) { try status.checkWriting() }
        status.mended()
        try status.checkServingValues(now: start)
        try status.checkWriting()
    }

    @Test func aWriteThatMissedItsDeadlineMakesTheNextFailAtOnceUntilAReadSucceeds() throws {
        let status = ReplicationStatus(maxLag: .seconds(1), staleAfter: .seconds(60))
        let start = Date(timeIntervalSince1970: 1_000_000)
        status.read(started: start, head: 5, applied: 5)
        status.writeFailed("the cluster's database did not answer a write within 2 s")
        #expect(throws: CofferError.self) { try status.checkWriting() }
        try status.checkServingValues(now: start)
        status.read(started: start.addingTimeInterval(1), head: 5, applied: 5)
        try status.checkWriting()
    }
}

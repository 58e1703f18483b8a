import CofferCore
import CofferTestSupport
import Foundation
import Testing

@testable import CofferStore

@Suite struct AuditJournalTests {
    func event(_ pid: Int32, _ f: StoreFixture) -> AuditEvent {
        AuditEvent(time: f.clock.now, socket: .worker, action: .operation(.get), peerUID: 1000, peerPID: pid)
    }

    func events(_ pids: ClosedRange<Int32>, _ f: StoreFixture) -> [AuditEvent] { pids.map { event($0, f) } }

    func journalFile(_ f: StoreFixture, _ index: Int) -> String {
        f.dir.child("data/\(AuditJournal.fileNames[index])")
    }

    /// Folds the journal into the store as the writer does.
    @discardableResult
    func fold(_ journal: AuditJournal, _ f: StoreFixture) throws -> Int {
        try journal.fold { records, through, pending throws(CofferError) in
            try f.store.write { try $0.foldAudit(records, journalThrough: through, pendingThrough: pending) }
        }
    }

    /// A fold the store refuses, as a full map does.
    func failedFold(_ journal: AuditJournal) {
        _ = try? journal.fold { _, _, _ throws(CofferError) in
            throw CofferError(.resourceExhausted, "the store is full")
        }
    }

    func pids(_ f: StoreFixture) throws -> [Int32] { try f.store.auditRecords(limit: 100_000).map(\.peerPID) }

    @Test func recordsGetGaplessSequencesWhenTheyJoinTheChainWithTheRecordsOfChanges() throws {
        let f = try StoreFixture()
        let (journal, _) = try AuditJournal.open(store: f.store)
        try journal.append([event(1, f), event(2, f)])
        #expect(journal.pendingCount == 2)
        f.advance(1)
        // A change's record waits in the store, in its own transaction, and joins the chain in the same fold.
        try f.store.appendAudit([event(3, f)])
        f.advance(1)
        try journal.append([event(4, f)])
        #expect(try fold(journal, f) == 3)
        #expect(journal.pendingCount == 0)
        let records = try f.store.auditRecords()
        #expect(records.map(\.peerPID) == [1, 2, 3, 4])
        #expect(records.map(\.sequence) == [1, 2, 3, 4])
        #expect(try Data(contentsOf: URL(fileURLWithPath: journalFile(f, 0))).isEmpty)
    }

    @Test func whatACrashLeftInTheJournalIsRecoveredAtStartAndNumberingGoesOn() throws {
        let f = try StoreFixture()
        var (journal, _) = try AuditJournal.open(store: f.store)
        try journal.append([event(1, f), event(2, f)])
        try journal.append([event(3, f)])
        journal.close()
        // As after kill -9: nothing was folded. A torn entry follows the last whole one.
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: journalFile(f, 0)))
        handle.seekToEndOfFile()
        handle.write(Data([40, 0, 0, 0, 9, 9, 9]))
        try handle.close()
        try f.reopen()
        let recovery: AuditJournal.Recovery
        (journal, recovery) = try AuditJournal.open(store: f.store)
        #expect(recovery.records == 3)
        #expect(recovery.droppedBytes == 7)
        #expect(try f.store.auditRecords().map(\.sequence) == [1, 2, 3])
        try journal.append([event(4, f)])
        try fold(journal, f)
        #expect(try pids(f) == [1, 2, 3, 4])
        #expect(f.store.currentMetadata.journalFolded == 4)
    }

    @Test func recordsInBothFilesAreRecoveredWhicheverFileHoldsTheOlder() throws {
        // The first fold leaves appends on the second file; a fold the store refuses then leaves that file
        // waiting, older than what goes on in the first. Every record comes back, in order, once.
        let f = try StoreFixture()
        var (journal, _) = try AuditJournal.open(store: f.store)
        try journal.append(events(1...2, f))
        try fold(journal, f)
        try journal.append(events(3...5, f))
        failedFold(journal)
        try journal.append(events(6...7, f))
        journal.close()
        #expect(try Data(contentsOf: URL(fileURLWithPath: journalFile(f, 1))).count > 0)
        try f.reopen()
        (journal, _) = try AuditJournal.open(store: f.store)
        #expect(try pids(f) == Array(1...7))
        #expect(try f.store.auditRecords().map(\.sequence) == Array(1...7))
    }

    @Test func aFoldTheStoreRefusesKeepsEveryRecordUntilOneSucceeds() throws {
        let f = try StoreFixture()
        let (journal, _) = try AuditJournal.open(store: f.store)
        try journal.append(events(1...3, f))
        failedFold(journal)
        try journal.append(events(4...5, f))
        failedFold(journal)
        try journal.append(events(6...6, f))
        #expect(journal.pendingCount == 6)
        try fold(journal, f)
        try fold(journal, f)
        #expect(try pids(f) == Array(1...6))
        #expect(journal.pendingCount == 0)
    }

    @Test func aFoldRepeatedAfterACrashSkipsWhatItFoldedAlready() throws {
        let f = try StoreFixture()
        var (journal, _) = try AuditJournal.open(store: f.store)
        try journal.append(events(1...3, f))
        let before = try Data(contentsOf: URL(fileURLWithPath: journalFile(f, 0)))
        try fold(journal, f)
        journal.close()
        // As if cofferd died after the fold committed and before the file was emptied.
        try before.write(to: URL(fileURLWithPath: journalFile(f, 0)))
        try f.reopen()
        (journal, _) = try AuditJournal.open(store: f.store)
        #expect(try pids(f) == [1, 2, 3])
    }

    @Test func aRecordRemovedFromTheJournalRefusesTheStart() throws {
        let f = try StoreFixture()
        let (journal, _) = try AuditJournal.open(store: f.store)
        try journal.append([event(1, f)])
        try journal.append([event(2, f)])
        try journal.append([event(3, f)])
        journal.close()
        // The middle entry cut out cleanly, as someone without the key could.
        let bytes = try Array(Data(contentsOf: URL(fileURLWithPath: journalFile(f, 0))))
        let entry = bytes.count / 3
        try Data(bytes[0..<entry] + bytes[(2 * entry)...]).write(to: URL(fileURLWithPath: journalFile(f, 0)))
        try f.reopen()
        let error = cofferError { _ = try AuditJournal.open(store: f.store) }
        #expect(error?.code == .dataLoss)
        #expect(error?.message.contains("lacks records 2 to 2") == true)
        #expect(try f.store.verificationProblems().contains { $0.message.contains("lacks records 2 to 2") })
    }

    @Test func aRecordCutFromAWaitingJournalWhileCofferdRunsStopsTheFold() throws {
        let f = try StoreFixture()
        let (journal, _) = try AuditJournal.open(store: f.store)
        for pid in Int32(1)...Int32(3) { try journal.append([event(pid, f)]) }
        failedFold(journal)
        // The waiting file loses its middle entry, in place, as someone with the directory but not the key could.
        let path = journalFile(f, 0)
        let bytes = try Array(Data(contentsOf: URL(fileURLWithPath: path)))
        let entry = bytes.count / 3
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: path))
        try handle.truncate(atOffset: 0)
        try handle.write(contentsOf: Data(bytes[0..<entry] + bytes[(2 * entry)...]))
        try handle.close()
        let error = cofferError { _ = try fold(journal, f) }
        #expect(error?.code == .dataLoss && error?.message.contains("lacks records 2 to 2") == true)
        // Nothing past the gap joined the chain.
        #expect(try !pids(f).contains(3))
    }

    @Test func aChangesRecordJoinsTheChainAfterTheJournalRecordsTakenBeforeIt() throws {
        // More journal records than one fold's chunk, and a change's record taken after all of them: it must come
        // after the second chunk's records, not with the first chunk.
        let f = try StoreFixture()
        let (journal, _) = try AuditJournal.open(store: f.store)
        let count = (AuditJournal.foldChunk / 100 + 1) * 100
        var pid: Int32 = 0
        while pid < Int32(count) {
            try journal.append(
                (0..<100).map { _ in
                    pid += 1
                    return event(pid, f)
                }
            )
        }
        try f.store.appendAudit([event(-1, f)])
        try fold(journal, f)
        let order = try pids(f)
        #expect(order.count == count + 1)
        #expect(order.last == -1)
        #expect(Array(order.dropLast()) == Array(1...Int32(count)), "the journal's records out of order")
    }

    @Test func anEntryThatFailsItsChecksumWithWholeEntriesAfterItRefusesTheStart() throws {
        let f = try StoreFixture()
        let (journal, _) = try AuditJournal.open(store: f.store)
        try journal.append([event(1, f)])
        try journal.append([event(2, f)])
        try journal.append([event(3, f)])
        journal.close()
        var bytes = try Array(Data(contentsOf: URL(fileURLWithPath: journalFile(f, 0))))
        bytes[bytes.count / 2] ^= 0x01
        try Data(bytes).write(to: URL(fileURLWithPath: journalFile(f, 0)))
        try f.reopen()
        #expect(cofferError { _ = try AuditJournal.open(store: f.store) }?.code == .dataLoss)
    }

    @Test func appendsPastTheLimitOfWhatWaitsAreRefusedSayingWhyTheStoreRefusesThem() throws {
        let f = try StoreFixture()
        let reports = ReportLog()
        let (journal, _) = try AuditJournal.open(store: f.store, maxPendingBytes: 400, report: reports.add)
        try journal.append(events(1...2, f))
        failedFold(journal)
        var refused: CofferError?
        for pid in Int32(3)...Int32(100) {
            refused = cofferError { try journal.append([event(pid, f)]) }
            if refused != nil { break }
        }
        let error = try #require(refused)
        #expect(error.code == .resourceExhausted)
        #expect(error.message.contains("the store refuses them: the store is full"))
        #expect(reports.messages.count == 1)
        // Nothing of the refused append was written, and no number was used.
        let waiting = journal.pendingCount
        try fold(journal, f)
        #expect(try pids(f).count == waiting)
        #expect(try f.store.auditRecords().map(\.sequence) == (1...UInt64(waiting)).map { $0 })
    }

    @Test func aFailedWriteUsesNoNumberAndSaysWhy() throws {
        let f = try StoreFixture()
        let (journal, _) = try AuditJournal.open(store: f.store)
        try journal.append([event(1, f)])
        try fold(journal, f)
        journal.close()
        let error = cofferError { try journal.append([event(2, f)]) }
        #expect(error?.code == .unavailable)
        #expect(error?.message.contains("audit trail cannot be written") == true)
        try f.reopen()
        let (reopened, _) = try AuditJournal.open(store: f.store)
        try reopened.append([event(3, f)])
        try fold(reopened, f)
        #expect(try f.store.auditRecords().map(\.sequence) == [1, 2])
        #expect(f.store.currentMetadata.journalFolded == 2)
    }
}

/// What a journal reported, for a test to read.
final class ReportLog: @unchecked Sendable {
    private let lock = NSLock()
    private var reported: [String] = []

    var add: @Sendable (String, CofferError) -> Void {
        { [self] message, _ in lock.withLock { reported.append(message) } }
    }

    var messages: [String] { lock.withLock { reported } }
}

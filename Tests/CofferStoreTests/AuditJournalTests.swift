import CofferCore
import CofferTestSupport
import Foundation
import Testing

@testable import CofferStore

@Suite struct AuditJournalTests {
    func event(_ pid: Int32, _ f: StoreFixture) -> AuditEvent {
        AuditEvent(time: f.clock.now, socket: .worker, action: .operation(.get), peerUID: 1000, peerPID: pid)
    }

    func journalFile(_ f: StoreFixture, _ index: Int) -> String {
        f.dir.child("data/\(AuditJournal.fileNames[index])")
    }

    @Test func appendedRecordsAreNumberedAndFoldedIntoTheStore() throws {
        let f = try StoreFixture()
        let (journal, _) = try AuditJournal.open(store: f.store)
        let numbered = try journal.append([event(1, f), event(2, f)])
        #expect(numbered.map(\.sequence) == [1, 2])
        #expect(journal.pendingCount == 2)
        // A mutation in between takes the next number from the same counter.
        try f.store.appendAudit([event(3, f)])
        #expect(try journal.append([event(4, f)]).map(\.sequence) == [4])
        let (file, records) = try #require(journal.switchFiles())
        try f.store.write { try $0.foldAudit(records) }
        try journal.folded(file)
        #expect(journal.pendingCount == 0)
        #expect(try f.store.auditRecords().map(\.peerPID) == [1, 2, 3, 4])
        #expect(try Data(contentsOf: URL(fileURLWithPath: journalFile(f, file))).isEmpty)
    }

    @Test func whatACrashLeftInTheJournalIsRecoveredAtStart() throws {
        let f = try StoreFixture()
        var (journal, _) = try AuditJournal.open(store: f.store)
        _ = try journal.append([event(1, f), event(2, f)])
        _ = try journal.append([event(3, f)])
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
        // Numbering goes on after the recovered records.
        #expect(try journal.append([event(4, f)]).map(\.sequence) == [4])
    }

    @Test func anEntryThatFailsItsChecksumEndsRecovery() throws {
        let f = try StoreFixture()
        let (journal, _) = try AuditJournal.open(store: f.store)
        _ = try journal.append([event(1, f)])
        _ = try journal.append([event(2, f)])
        journal.close()
        var bytes = try Array(Data(contentsOf: URL(fileURLWithPath: journalFile(f, 0))))
        bytes[bytes.count - 20] ^= 0x01
        try Data(bytes).write(to: URL(fileURLWithPath: journalFile(f, 0)))
        try f.reopen()
        let (_, recovery) = try AuditJournal.open(store: f.store)
        #expect(recovery.records == 1)
        #expect(try f.store.auditRecords().map(\.peerPID) == [1])
    }

    @Test func appendsAreRefusedPastTheLimitOfWhatWaits() throws {
        let f = try StoreFixture()
        let (journal, _) = try AuditJournal.open(store: f.store, maxPending: 3)
        _ = try journal.append([event(1, f), event(2, f)])
        let error = cofferError { _ = try journal.append([event(3, f), event(4, f)]) }
        #expect(error?.code == .resourceExhausted)
        // Nothing was written and no number was used.
        #expect(try journal.append([event(3, f)]).map(\.sequence) == [3])
    }

    @Test func aFailedWriteUsesNoNumberAndSaysWhy() throws {
        let f = try StoreFixture()
        let (journal, _) = try AuditJournal.open(store: f.store)
        journal.close()
        let error = cofferError { _ = try journal.append([event(1, f)]) }
        #expect(error?.code == .unavailable)
        #expect(error?.message.contains("audit trail cannot be written") == true)
        #expect(f.store.sequencer.current == 0)
    }
}

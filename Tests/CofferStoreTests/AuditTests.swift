import CofferCore
import CofferStore
import CofferTestSupport
import Foundation
import Testing

@Suite struct AuditTests {
    func event(_ operation: String, _ f: StoreFixture) -> AuditEvent {
        AuditEvent(time: f.clock.now, socket: "admin", operation: operation, peerUID: 0, peerPID: 42)
    }

    @Test func aMutationWritesItsRecordInItsOwnTransaction() throws {
        let f = try StoreFixture()
        let ref = try ConnectionRef(parsing: "aws/a")
        var put = event("Put", f)
        put.connection = ref.description
        try f.store.put(ref, fields: try f.keys.sealFields(["k": "v"]), audit: put)
        // A failed mutation writes nothing: its transaction aborted.
        #expect(cofferError { try f.store.put(ref, fields: try f.keys.sealFields(["k": "v"]), audit: put) } != nil)
        let records = try f.store.auditRecords()
        #expect(records.count == 1)
        #expect(records[0].operation == "Put")
        #expect(records[0].sequence == 1)
        #expect(records[0].connection == "aws/a")
        #expect(records[0].peerPID == 42)
    }

    @Test func issuingRecordsTheTokenIDNeverTheToken() throws {
        let f = try StoreFixture()
        let issued = try f.store.issueToken(for: try WorkflowName("w"), ttl: .seconds(60), audit: event("IssueToken", f))
        let records = try f.store.auditRecords()
        #expect(records.map(\.tokenID) == [issued.info.id])
        var dumped = ""
        dump(records, to: &dumped)
        #expect(!dumped.contains(issued.token.testText))
    }

    @Test func batchesPageAndPrune() throws {
        var limits = StoreLimits()
        limits.maxAuditRecords = 10
        let f = try StoreFixture(limits: limits)
        try f.store.appendAudit((0..<25).map { event("Get\($0)", f) })
        let kept = try f.store.auditRecords()
        #expect(kept.count == 10)
        #expect(kept.first?.sequence == 16)
        #expect(kept.last?.operation == "Get24")
        let page = try f.store.auditRecords(after: 20, limit: 3)
        #expect(page.map(\.sequence) == [21, 22, 23])
        try f.reopen()
        try f.store.appendAudit([event("Next", f)])
        #expect(try f.store.auditRecords(after: 25).map(\.sequence) == [26])
    }
}

import CofferCore
import CofferStore
import CofferTestSupport
import Foundation
import Testing

@Suite struct AuditTests {
    func event(_ operation: CofferOperation, _ f: StoreFixture, pid: Int32 = 42) -> AuditEvent {
        AuditEvent(time: f.clock.now, socket: .admin, action: .operation(operation), peerUID: 0, peerPID: pid)
    }

    @Test func aMutationWritesItsRecordInItsOwnTransaction() throws {
        let f = try StoreFixture()
        let ref = try ConnectionRef(parsing: "aws/a")
        var put = event(.put, f)
        put.connection = ref
        try f.store.put(ref, fields: try f.keys.sealFields(["k": "v"]), audit: put)
        // A failed mutation writes nothing: its transaction aborted.
        #expect(cofferError { try f.store.put(ref, fields: try f.keys.sealFields(["k": "v"]), audit: put) } != nil)
        let records = try f.store.auditRecords()
        #expect(records.count == 1)
        #expect(records[0].operation == .put)
        #expect(records[0].sequence == 1)
        #expect(records[0].connection == ref)
        #expect(records[0].peerPID == 42)
    }

    @Test func issuingRecordsTheTokenIDNeverTheToken() throws {
        let f = try StoreFixture()
        let issued = try f.store.issueToken(for: try WorkflowName("w"), ttl: .seconds(60), audit: event(.issueToken, f))
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
        try f.store.appendAudit((0..<25).map { event(.get, f, pid: $0) })
        let kept = try f.store.auditRecords()
        #expect(kept.count == 10)
        #expect(kept.first?.sequence == 16)
        #expect(kept.last?.peerPID == 24)
        let page = try f.store.auditRecords(after: 20, limit: 3)
        #expect(page.map(\.sequence) == [21, 22, 23])
        try f.reopen()
        try f.store.appendAudit([event(.list, f)])
        #expect(try f.store.auditRecords(after: 25).map(\.sequence) == [26])
    }

    @Test func aRecordRoundTripsEveryField() throws {
        let f = try StoreFixture()
        var full = AuditEvent(
            time: Date(unixMillis: 1_800_000_000_123),
            socket: .worker,
            action: .operation(.get),
            peerUID: 1000,
            peerPID: 77
        )
        full.connection = try ConnectionRef(parsing: "aws/prod")
        full.workflow = try WorkflowName("deploy")
        full.tokenID = try TokenID("0123456789abcdef")
        full.runID = try RunID("run-9")
        full.outcome = .permissionDenied
        full.count = 3
        var connect = AuditEvent(
            time: Date(unixMillis: 5),
            socket: .admin,
            action: .connect,
            peerUID: 65534,
            peerPID: 1
        )
        connect.outcome = .permissionDenied
        try f.store.appendAudit([full, connect])
        let read = try f.store.auditRecords()
        full.sequence = 1
        connect.sequence = 2
        #expect(read == [full, connect])
    }
}

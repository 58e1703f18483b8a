import CofferCore
import CofferCrypto
import CofferTestSupport
import Foundation
import Synchronization
import Testing

@testable import CofferStore

/// Reads while cofferd writes: a Get whose record changed after its snapshot starts again, a scan takes the
/// older copy; neither fails, and nothing altered behind cofferd's back is taken.
@Suite struct ConcurrentReadTests {
    @Test func getsAndScansSucceedUnderAStreamOfWrites() throws {
        let f = try StoreFixture()
        let count = 300
        for n in 0..<count {
            try f.put("aws/c\(n)", ["key": "k\(n)"])
            try f.grant("w", "aws/c\(n)")
        }
        let sealed = try (0..<count).map { try f.keys.sealFields(["key": "k\($0)"]) }
        let stop = Atomic(false)
        let writes = Atomic(0)
        let writer = Thread {
            var n = 0
            while !stop.load(ordering: .relaxed) {
                // Overwrites (every record changes again and again) and waiting audit records (added, then
                // folded away: tombstones).
                _ = try? f.store.write { writer in
                    for index in 0..<8 {
                        let ref = try ConnectionRef(parsing: "aws/c\((n + index * 37) % count)")
                        _ = try writer.overwrite(
                            ref,
                            try f.store.open(SealedFields(sealed[(n + index * 37) % count])),
                            expectedVersion: nil
                        )
                    }
                    try writer.appendAudit(
                        AuditEvent(time: Date(), socket: .admin, action: .operation(.put), peerUID: 0, peerPID: 1)
                    )
                }
                if n % 5 == 0 { _ = try? f.store.auditRecords(limit: 1) }
                n += 8
                writes.add(1, ordering: .relaxed)
            }
        }
        writer.start()
        defer { stop.store(true, ordering: .relaxed) }
        var failures: [String] = []
        var gets = 0
        var scans = 0
        let deadline = Date().addingTimeInterval(3)
        while Date() < deadline {
            for n in stride(from: 0, to: count, by: 7) {
                do {
                    let values = try f.values("aws/c\(n)", as: "w")
                    if values != ["key": "k\(n)"] { failures.append("wrong values for aws/c\(n)") }
                    gets += 1
                } catch {
                    failures.append("get: \(error)")
                }
            }
            do {
                #expect(try f.store.list().count == count)
                #expect(try f.store.keyStatus().generations.count == 1)
                scans += 1
            } catch {
                failures.append("scan: \(error)")
            }
        }
        stop.store(true, ordering: .relaxed)
        while writer.isExecuting { usleep(1000) }
        #expect(failures.isEmpty, "\(failures.prefix(5))")
        #expect(gets > 0 && scans > 0 && writes.load(ordering: .relaxed) > 10)
        // And the map still refuses what was changed behind cofferd's back.
        let key = Array("aws/c1".utf8)
        let stored = try f.store.env.read { try $0.get(f.store.tables.connections.db, key)! }
        try f.store.overwrite(try ConnectionRef(parsing: "aws/c1"), fields: try f.keys.sealFields(["key": "new"]))
        try f.store.env.write { try $0.put(f.store.tables.connections.db, key, stored) }
        #expect(cofferError { _ = try f.values("aws/c1", as: "w") }?.code == .dataLoss)
        #expect(cofferError { _ = try f.store.list() }?.code == .dataLoss)
    }
}

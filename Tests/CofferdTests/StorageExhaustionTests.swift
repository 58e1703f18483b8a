import CofferClient
import CofferCore
import CofferCrypto
import CofferTestSupport
import CofferWire
import Foundation
import Testing

/// A small tmpfs, so that a test can fill the disk. Needs root (CI runs as root).
final class SmallFileSystem {
    let path: String
    private let dir: TemporaryDirectory

    init?(megabytes: Int) {
        dir = TemporaryDirectory(prefix: "tmpfs")
        path = dir.path
        let mounted = try? BuiltProducts.run(
            "/bin/mount",
            ["-t", "tmpfs", "-o", "size=\(megabytes)m,mode=0700", "tmpfs", path]
        )
        guard mounted?.status == 0 else { return nil }
    }

    /// Writes a file until the disk is full.
    func fill() {
        let handle =
            FileHandle(forWritingAtPath: (path as NSString).appendingPathComponent("filler"))
            ?? {
                FileManager.default.createFile(
                    atPath: (path as NSString).appendingPathComponent("filler"),
                    contents: nil
                )
                return FileHandle(forWritingAtPath: (path as NSString).appendingPathComponent("filler"))!
            }()
        let chunk = Data(count: 64 * 1024)
        while (try? handle.write(contentsOf: chunk)) != nil {}
        try? handle.close()
    }

    func free() { unlink((path as NSString).appendingPathComponent("filler")) }

    deinit { _ = try? BuiltProducts.run("/bin/umount", ["-l", path]) }
}

@Suite(.enabled(if: getuid() == 0, "needs root to mount a small tmpfs"))
struct StorageExhaustionTests {
    func secrets(_ values: [String: String]) throws -> [FieldName: SecretBytes] {
        Dictionary(uniqueKeysWithValues: try values.map { (try FieldName($0.key), SecretBytes(utf8: $0.value)) })
    }

    /// Gets until `count` answers; returns how many were OK.
    func gets(
        _ worker: CofferWorkerClient,
        _ ref: ConnectionRef,
        _ token: SecretBytes,
        count: Int
    )
        -> (ok: Int, codes: Set<StatusCode>)
    {
        var ok = 0
        var codes: Set<StatusCode> = []
        for _ in 0..<count {
            do {
                _ = try worker.get(ref, token: token)
                ok += 1
            } catch {
                codes.insert(error.code)
            }
        }
        return (ok, codes)
    }

    @Test func onAFullDiskNoValueLeavesWithoutItsRecord() throws {
        guard let disk = SmallFileSystem(megabytes: 4) else {
            Issue.record("could not mount a tmpfs")
            return
        }
        let daemon = try CofferdProcess(dataDirectory: (disk.path as NSString).appendingPathComponent("data"))
        let admin = try CofferAdminClient(socketPath: daemon.adminSocket)
        let canary = Canary("disk")
        let ref = try ConnectionRef(parsing: "generic/aws-prod")
        try admin.put(ref, values: try secrets(["secret": canary.text]))
        try admin.grant(try WorkflowName("w"), ref)
        let token = try admin.issueToken(for: try WorkflowName("w"), ttl: .seconds(600)).token
        let worker = try CofferWorkerClient(socketPath: daemon.workerSocket)
        let before = gets(worker, ref, token, count: 20)
        #expect(before.ok == 20)
        disk.fill()
        let during = gets(worker, ref, token, count: 200)
        #expect(during.codes.isSubset(of: [.resourceExhausted]))
        #expect(during.codes.contains(.resourceExhausted))
        disk.free()
        // Every OK answer has its record: the trail, read after room was made, holds exactly as many.
        let after = gets(worker, ref, token, count: 5)
        #expect(after.ok == 5)
        let records = try trail(admin).filter { $0.operation == .get && $0.outcome == .ok }
        #expect(records.count == before.ok + during.ok + after.ok)
        #expect(!canary.occurs(in: daemon.output))
    }

    @Test func onAFullMapGetsAreRecordedAndADeleteMakesRoom() throws {
        let daemon = try CofferdProcess(arguments: ["--map-size", "1"])
        let admin = try CofferAdminClient(socketPath: daemon.adminSocket)
        let ref = try ConnectionRef(parsing: "generic/aws-prod")
        try admin.put(ref, values: try secrets(["secret": "s"]))
        try admin.grant(try WorkflowName("w"), ref)
        let token = try admin.issueToken(for: try WorkflowName("w"), ttl: .seconds(600)).token
        var full: CofferError?
        for index in 0..<64 where full == nil {
            do {
                try admin.put(
                    try ConnectionRef(parsing: "generic/http-filler\(index)"),
                    values: try secrets(["v": String(repeating: "x", count: 60_000)])
                )
            } catch let error as CofferError {
                full = error
            }
        }
        #expect(full?.code == .resourceExhausted)
        #expect(full?.message.contains("--map-size") == true)
        let worker = try CofferWorkerClient(socketPath: daemon.workerSocket)
        let served = gets(worker, ref, token, count: 50)
        // Served from the journal: the records wait there for room in the store.
        #expect(served.ok == 50)
        // A delete on the full map succeeds, and its room lets the trail's records in.
        try admin.delete(try ConnectionRef(parsing: "generic/http-filler0"))
        try admin.delete(try ConnectionRef(parsing: "generic/http-filler1"))
        let records = try trail(admin).filter { $0.operation == .get && $0.outcome == .ok }
        #expect(records.count == served.ok)
        #expect(try worker.health().serving)
    }

    @Test func aFloodOfGetsOnAFullMapIsRecordedExactlyOnceAfterKill9AndARestartWithRoom() throws {
        let dir = TemporaryDirectory(prefix: "cofferd")
        var daemon = try CofferdProcess(dir: dir, arguments: ["--map-size", "1"])
        var admin = try CofferAdminClient(socketPath: daemon.adminSocket)
        let ref = try ConnectionRef(parsing: "generic/aws-prod")
        try admin.put(ref, values: try secrets(["secret": "s"]))
        try admin.grant(try WorkflowName("w"), ref)
        let token = try admin.issueToken(for: try WorkflowName("w"), ttl: .seconds(600)).token
        var full = false
        for index in 0..<64 where !full {
            do {
                try admin.put(
                    try ConnectionRef(parsing: "generic/http-filler\(index)"),
                    values: try secrets(["v": String(repeating: "x", count: 60_000)])
                )
            } catch {
                full = (error as? CofferError)?.code == .resourceExhausted
            }
        }
        #expect(full)
        // Each answered only once its record is written to the journal, where it waits on disk for room
        // (benchmarks/faults.py floods far more).
        let worker = try CofferWorkerClient(socketPath: daemon.workerSocket)
        let served = gets(worker, ref, token, count: 10_000)
        #expect(served.ok == 10_000)
        daemon.stop(signal: SIGKILL)
        daemon = try CofferdProcess(dir: dir, arguments: ["--map-size", "256"])
        admin = try CofferAdminClient(socketPath: daemon.adminSocket)
        let records = try trail(admin)
        #expect(records.filter { $0.operation == .get && $0.outcome == .ok }.count == served.ok)
        #expect(records.map(\.sequence) == records.indices.map { UInt64($0) + 1 })
        daemon.stop()
        let verified = try BuiltProducts.run(
            BuiltProducts.path("cofferd"),
            ["verify", "--data-dir", daemon.dataDirectory]
        )
        #expect(verified.status == 0, "\(verified.stderr)")
    }

    func trail(_ admin: CofferAdminClient) throws -> [AuditEvent] {
        var records: [AuditEvent] = []
        var after: UInt64 = 0
        while true {
            let page = try admin.audit(after: after)
            records += page.records
            guard let last = page.records.last, last.sequence < page.lastSequence else { return records }
            after = last.sequence
        }
    }
}
